# hotswap_add_module(<target> NAME <module-name> VERSION <semver> SOURCES <src>...
#                    [OUTPUT_DIR <dir>] [LINK <libs>...])
#
# Builds a hotswap module: a shared object named <module-name>-<version>.so with
# hidden visibility and -fno-gnu-unique, whose code learns its name and version
# from HOTSWAP_MODULE_NAME / HOTSWAP_MODULE_VERSION. After linking, the build fails
# if the library has an STB_GNU_UNIQUE symbol: glibc never unloads such a library,
# so a reload would silently keep running the old code.
set(HOTSWAP_CHECK_UNIQUE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_no_gnu_unique.cmake)

function(hotswap_add_module target)
  cmake_parse_arguments(ARG "" "NAME;VERSION;OUTPUT_DIR" "SOURCES;LINK" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_VERSION OR NOT ARG_SOURCES)
    message(FATAL_ERROR "hotswap_add_module(${target}): NAME, VERSION and SOURCES are required")
  endif()
  if(NOT ARG_NAME MATCHES "^[a-z0-9][a-z0-9_-]*$")
    message(FATAL_ERROR "hotswap_add_module(${target}): NAME '${ARG_NAME}' must match [a-z0-9][a-z0-9_-]*")
  endif()
  if(NOT ARG_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.+-]+)?$")
    message(FATAL_ERROR "hotswap_add_module(${target}): VERSION '${ARG_VERSION}' is not a semantic version")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE hotswap::module_sdk ${ARG_LINK})
  target_compile_definitions(${target} PRIVATE
    HOTSWAP_MODULE_NAME="${ARG_NAME}" HOTSWAP_MODULE_VERSION="${ARG_VERSION}")
  target_compile_options(${target} PRIVATE ${HOTSWAP_WARNINGS} -fvisibility=hidden
    $<$<COMPILE_LANGUAGE:CXX>:-fvisibility-inlines-hidden -fno-gnu-unique>)
  if(NOT HOTSWAP_SANITIZE)
    # Every symbol must resolve inside the module or its libraries, never in the host.
    # (Sanitizer builds resolve __asan_* from the executable, so the check is off there.)
    target_link_options(${target} PRIVATE -Wl,-z,defs)
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${ARG_NAME}-${ARG_VERSION}" SUFFIX ".so"
    HOTSWAP_MODULE_NAME "${ARG_NAME}" HOTSWAP_MODULE_VERSION "${ARG_VERSION}")
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR})
  endif()
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DLIBRARY=$<TARGET_FILE:${target}> -P ${HOTSWAP_CHECK_UNIQUE_SCRIPT}
    VERBATIM)
endfunction()
