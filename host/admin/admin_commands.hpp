// The admin commands: what each request of the admin protocol does to the
// running host. The protocol itself (framing, peer check) is admin_server.hpp;
// the command reference is host/README.md, "Admin protocol".
#pragma once

#include "admin/admin_server.hpp"

namespace hotswap::host {

class Runtime;

AdminHandler make_admin_handler(Runtime& runtime);

}  // namespace hotswap::host
