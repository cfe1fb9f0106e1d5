# hotswap_add_rehearsal_test(<name>
#     SOURCES <source>...          the test's sources (Catch2 2, catch2/catch.hpp)
#     RELEASES <release>...        release targets made by hotswap_add_release, or release folders
#     [LINK <library>...]          more libraries to link
#     [TIMEOUT <seconds>])         per test case (default 300): a backstop, never what a test asserts
#
# Builds <name>, a Catch2 test program linked with the rehearsal kit
# (hotswap::rehearsal_kit) and a Catch2 main, and registers each of its test
# cases with ctest (catch_discover_tests, prefixed "<name>:"). The test finds
# its releases with hotswap::kit::test_releases(): the folders are compiled in
# (the HOTSWAP_REHEARSAL_RELEASES definition, ':'-separated as PATH is) and ctest also
# passes them in the environment variable of the same name, which overrides
# the compiled-in list when a test is run by hand against other folders.
#
# A release target must carry the HOTSWAP_RELEASE_DIR property
# (hotswap_add_release sets it); the test then depends on it, so building the
# test builds its releases.
#
# The function refers to no file of the source tree (the Catch2 main is
# generated in the build folder) and finds the kit by its target name, so this
# file works as is once a package installs it next to hotswap::rehearsal_kit.
include_guard(GLOBAL)

# The Catch2 main every rehearsal test shares (one per project).
function(_hotswap_rehearsal_catch_main out)
  if(NOT TARGET hotswap_rehearsal_catch_main)
    set(main ${CMAKE_BINARY_DIR}/hotswap_rehearsal_catch_main.cpp)
    if(NOT EXISTS ${main})
      file(WRITE ${main} "#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n")
    endif()
    add_library(hotswap_rehearsal_catch_main STATIC ${main})
    target_link_libraries(hotswap_rehearsal_catch_main PUBLIC Catch2::Catch2)
  endif()
  set(${out} hotswap_rehearsal_catch_main PARENT_SCOPE)
endfunction()

function(hotswap_add_rehearsal_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;RELEASES;LINK" ${ARGN})
  if(NOT ARG_SOURCES OR NOT ARG_RELEASES)
    message(FATAL_ERROR "hotswap_add_rehearsal_test(${name}): SOURCES and RELEASES are required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "hotswap_add_rehearsal_test(${name}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(NOT TARGET hotswap::rehearsal_kit)
    message(FATAL_ERROR "hotswap_add_rehearsal_test(${name}): the rehearsal kit (hotswap::rehearsal_kit) is not defined")
  endif()
  include(Catch)

  set(dirs "")
  set(release_targets "")
  foreach(release IN LISTS ARG_RELEASES)
    if(TARGET ${release})
      get_target_property(dir ${release} HOTSWAP_RELEASE_DIR)
      if(NOT dir)
        message(FATAL_ERROR "hotswap_add_rehearsal_test(${name}): target ${release} has no HOTSWAP_RELEASE_DIR "
                            "property (is it a hotswap_add_release target?)")
      endif()
      list(APPEND release_targets ${release})
    else()
      get_filename_component(dir ${release} ABSOLUTE)
    endif()
    list(APPEND dirs ${dir})
  endforeach()
  # ':'-separated, as PATH is: a ';' would split the definition and the environment entry.
  string(REPLACE ";" ":" dirs_escaped "${dirs}")

  _hotswap_rehearsal_catch_main(catch_main)
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${catch_main} hotswap::rehearsal_kit ${ARG_LINK})
  target_compile_definitions(${name} PRIVATE "HOTSWAP_REHEARSAL_RELEASES=\"${dirs_escaped}\"")
  if(HOTSWAP_WARNINGS)
    target_compile_options(${name} PRIVATE ${HOTSWAP_WARNINGS})
  endif()
  if(release_targets)
    add_dependencies(${name} ${release_targets})
  endif()
  catch_discover_tests(${name} TEST_PREFIX "${name}:" EXTRA_ARGS --warn NoTests
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "HOTSWAP_REHEARSAL_RELEASES=${dirs_escaped}")
  if(TARGET hotswap_tests)
    add_dependencies(hotswap_tests ${name})
  endif()
endfunction()
