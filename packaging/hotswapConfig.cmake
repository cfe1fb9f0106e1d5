# The hotswap CMake package: find_package(hotswap 1 REQUIRED) gives
#   hotswap::module_sdk   the SDK headers (<hotswap/module.h>, <hotswap/module.hpp>)
#   hotswap::hotswap      the installed host, as an imported executable
#   hotswap_add_module()  build a module (HotswapModule.cmake)
#   hotswap_add_release() assemble a release tarball (HotswapRelease.cmake)
# Everything is found relative to this file, so the package can be moved.
# module.hpp offers the config and migration `extra` parsed with nlohmann_json.
include(CMakeFindDependencyMacro)
find_dependency(nlohmann_json 3)
include("${CMAKE_CURRENT_LIST_DIR}/hotswapTargets.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/HotswapModule.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/HotswapRelease.cmake")
