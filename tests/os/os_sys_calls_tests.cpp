#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "faulty_os_sys_calls.hpp"
#include "os/fd.hpp"
#include "os/os_sys_calls.hpp"

using hotswap::os::Fd;
using hotswap::os::OsSysCalls;
using hotswap::os::real_os_sys_calls;
using hotswap::os::SpawnRequest;
using hotswap::test::FaultyOsSysCalls;

namespace {

OsSysCalls& os() { return real_os_sys_calls(); }

// A pipe whose two ends close themselves.
struct Pipe {
  Fd read_end, write_end;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_end = Fd(fds[0]);
    write_end = Fd(fds[1]);
  }
};

bool same_file(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

TEST_CASE("a failing call carries its errno and the system's text", "[os]") {
  const auto opened = os().open("/nonexistent/hotswap-os-test", O_RDONLY | O_CLOEXEC);
  CHECK_FALSE(opened.ok());
  CHECK(opened.value == -1);
  CHECK(opened.error == ENOENT);
  CHECK(opened.error_text() == "No such file or directory");
  CHECK(hotswap::os::errno_text(ENOSPC) == "No space left on device");

  const auto succeeded = os().open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(succeeded.ok());
  CHECK(succeeded.error == 0);
  Fd owned(succeeded);
  CHECK(owned.valid());
}

TEST_CASE("Fd is move-only and closes its descriptor exactly once", "[os][fd]") {
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<Fd>);
  STATIC_REQUIRE_FALSE(std::is_copy_assignable_v<Fd>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Fd>);
  FaultyOsSysCalls fake;
  {
    Fd first(fake.open("/dev/null", O_RDONLY | O_CLOEXEC), fake);
    REQUIRE(first.valid());
    Fd second(std::move(first));
    CHECK_FALSE(first.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
    Fd third;
    third = std::move(second);
    CHECK(third.valid());
    CHECK(fake.calls_containing("close").empty());
    CHECK(third.close().ok());
    CHECK_FALSE(third.valid());
    CHECK(third.close().ok());  // a second close does nothing
  }
  CHECK(fake.calls_containing("close /dev/null").size() == 1);

  {
    Fd assigned(fake.open("/dev/null", O_RDONLY | O_CLOEXEC), fake);
    assigned = Fd(fake.open("/dev/zero", O_RDONLY | O_CLOEXEC), fake);  // the first is closed here
    CHECK(fake.calls_containing("close /dev/null").size() == 2);
  }
  CHECK(fake.calls_containing("close /dev/zero").size() == 1);

  const int raw = Fd(fake.open("/dev/null", O_RDONLY | O_CLOEXEC), fake).release();
  CHECK(fake.calls_containing("close /dev/null").size() == 2);  // released: not closed by the Fd
  CHECK(::close(raw) == 0);
}

TEST_CASE("socket makes a descriptor with the flags asked for, or says why not", "[os][socket]") {
  const auto made = os().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(made.ok());
  const Fd socket(made);
  CHECK((::fcntl(socket.get(), F_GETFD) & FD_CLOEXEC) != 0);

  const auto refused = os().socket(-1, SOCK_STREAM, 0);
  CHECK_FALSE(refused.ok());
  CHECK(refused.error == EAFNOSUPPORT);
}

TEST_CASE("sendmsg and recvmsg pass bytes and a descriptor (SCM_RIGHTS)", "[os][socket]") {
  int pair[2];
  REQUIRE(os().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair).ok());
  const Fd sender(pair[0]);
  const Fd receiver(pair[1]);
  const Fd passed(os().open("/dev/null", O_RDONLY | O_CLOEXEC));
  REQUIRE(passed.valid());

  char payload[] = "handover";
  iovec out_iov{payload, sizeof payload};
  alignas(cmsghdr) char out_control[CMSG_SPACE(sizeof(int))] = {};
  msghdr out{};
  out.msg_iov = &out_iov;
  out.msg_iovlen = 1;
  out.msg_control = out_control;
  out.msg_controllen = sizeof out_control;
  cmsghdr* header = CMSG_FIRSTHDR(&out);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  const int passed_fd = passed.get();
  std::memcpy(CMSG_DATA(header), &passed_fd, sizeof passed_fd);
  const auto sent = os().sendmsg(sender.get(), out, MSG_NOSIGNAL);
  REQUIRE(sent.ok());
  CHECK(sent.value == static_cast<ssize_t>(sizeof payload));

  char received_bytes[sizeof payload] = {};
  iovec in_iov{received_bytes, sizeof received_bytes};
  alignas(cmsghdr) char in_control[CMSG_SPACE(sizeof(int))] = {};
  msghdr in{};
  in.msg_iov = &in_iov;
  in.msg_iovlen = 1;
  in.msg_control = in_control;
  in.msg_controllen = sizeof in_control;
  const auto got = os().recvmsg(receiver.get(), in, MSG_CMSG_CLOEXEC);
  REQUIRE(got.ok());
  CHECK(got.value == static_cast<ssize_t>(sizeof payload));
  CHECK(std::string(received_bytes) == "handover");
  const cmsghdr* received_header = CMSG_FIRSTHDR(&in);
  REQUIRE(received_header != nullptr);
  REQUIRE(received_header->cmsg_type == SCM_RIGHTS);
  int received_fd = -1;
  std::memcpy(&received_fd, CMSG_DATA(received_header), sizeof received_fd);
  const Fd received(received_fd);
  CHECK(received.get() != passed.get());
  CHECK(same_file(received.get(), passed.get()));

  const auto bad_descriptor = os().recvmsg(-1, in, 0);
  CHECK(bad_descriptor.error == EBADF);
}

TEST_CASE("spawn starts a program with the descriptors it is given and reports its exit", "[os][spawn]") {
  Pipe pipe;
  SpawnRequest request;
  request.path = "/bin/sh";
  request.argv = {"sh", "-c", "echo \"$GREETING\" >&3; exit 7"};
  request.env = {"GREETING=hello from the child"};
  request.dup_fds = {{pipe.write_end.get(), 3}};
  const auto child = os().spawn(request);
  REQUIRE(child.ok());
  REQUIRE(child.value > 0);
  pipe.write_end.close();  // the child holds the only write end now: EOF when it exits

  std::string output;
  char chunk[256];
  for (;;) {
    const auto got = os().read(pipe.read_end.get(), chunk, sizeof chunk);
    if (!got.ok() && got.error == EINTR) continue;
    REQUIRE(got.ok());
    if (got.value == 0) break;
    output.append(chunk, size_t(got.value));
  }
  int status = 0;
  const auto reaped = os().waitpid(child.value, status, 0);
  REQUIRE(reaped.ok());
  CHECK(reaped.value == child.value);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 7);
  CHECK(output == "hello from the child\n");

  SpawnRequest missing;
  missing.path = "/nonexistent/hotswap-os-test";
  missing.argv = {"x"};
  const auto refused = os().spawn(missing);
  CHECK_FALSE(refused.ok());
  CHECK(refused.error == ENOENT);
}

TEST_CASE("the dl calls report dlerror's text", "[os][dl]") {
  const auto missing = os().dlopen("/nonexistent/libhotswap-os-test.so", RTLD_NOW | RTLD_LOCAL);
  CHECK_FALSE(missing.ok());
  CHECK(missing.value == nullptr);
  CHECK_THAT(missing.error, Catch::Contains("libhotswap-os-test.so"));
  CHECK(os().dlerror().empty());  // the call consumed the message

  const auto self = os().dlopen("libc.so.6", RTLD_NOW | RTLD_LOCAL);
  REQUIRE(self.ok());
  CHECK(os().dlsym(self.value, "getpid").ok());
  const auto absent = os().dlsym(self.value, "hotswap_no_such_symbol");
  CHECK_FALSE(absent.ok());
  CHECK_THAT(absent.error, Catch::Contains("hotswap_no_such_symbol"));
  CHECK(os().dlclose(self.value).ok());
}

TEST_CASE("the fake fails the calls it is told to and passes the others through", "[os][fake]") {
  FaultyOsSysCalls fake;
  fake.fail("write", "/dev/null", ENOSPC, 1);  // the second write fails
  Fd fd(fake.open("/dev/null", O_WRONLY | O_CLOEXEC), fake);
  REQUIRE(fd.valid());
  CHECK(fake.write(fd.get(), "a", 1).ok());
  const auto failed = fake.write(fd.get(), "b", 1);
  CHECK(failed.error == ENOSPC);
  CHECK(fake.write(fd.get(), "c", 1).ok());  // one failure only
  CHECK(fake.calls() == std::vector<std::string>{"open /dev/null", "write /dev/null", "write /dev/null",
                                                 "write /dev/null"});
}
