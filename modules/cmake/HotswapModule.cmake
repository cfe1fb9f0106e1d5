# hotswap_add_module(<target> NAME <module-name> VERSION <semver> SOURCES <src>...
#                    [OUTPUT_DIR <dir>] [LINK <libs>...] [WARNINGS <flags>...])
#
# Builds a hotswap module: a shared object named <module-name>-<version>.so with
# hidden visibility and -fno-gnu-unique, whose code learns its name and version
# from HOTSWAP_MODULE_NAME / HOTSWAP_MODULE_VERSION. After linking, the build fails
# if the library has an STB_GNU_UNIQUE symbol: glibc never unloads such a library,
# so a reload would silently keep running the old code.
#
# Warnings: WARNINGS, else the variable HOTSWAP_MODULE_WARNINGS where the function
# is called, else -Wall -Wextra -Werror (in this tree and in projects that use the
# installed package alike). Pass WARNINGS "" (or set the variable to "") for none.
#
# Included from this tree's CMakeLists.txt or from the installed hotswapConfig.cmake;
# the helper scripts sit beside this file. The folder is kept in a global property,
# because functions run in their caller's scope (a project that add_subdirectory()s
# hotswap does not see hotswap's variables).
set_property(GLOBAL PROPERTY HOTSWAP_CMAKE_SCRIPTS_DIR "${CMAKE_CURRENT_LIST_DIR}")
# The scripts' paths as variables too, for code in the includer's scope that reads them.
set(HOTSWAP_CHECK_UNIQUE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_no_gnu_unique.cmake)
set(HOTSWAP_ASSEMBLE_RELEASE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/assemble_release.cmake)

# hotswap_script_path(<out-var> <file>): the absolute path of a helper script.
function(hotswap_script_path out_var file)
  get_property(dir GLOBAL PROPERTY HOTSWAP_CMAKE_SCRIPTS_DIR)
  if(NOT dir OR NOT EXISTS "${dir}/${file}")
    message(FATAL_ERROR "hotswap: helper script ${file} not found in '${dir}' "
      "(include HotswapModule.cmake from the hotswap package or source tree)")
  endif()
  set(${out_var} "${dir}/${file}" PARENT_SCOPE)
endfunction()

function(hotswap_add_module target)
  cmake_parse_arguments(ARG "" "NAME;VERSION;OUTPUT_DIR" "SOURCES;LINK;WARNINGS" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_VERSION OR NOT ARG_SOURCES)
    message(FATAL_ERROR "hotswap_add_module(${target}): NAME, VERSION and SOURCES are required")
  endif()
  if(NOT ARG_NAME MATCHES "^[a-z0-9][a-z0-9_-]*$")
    message(FATAL_ERROR "hotswap_add_module(${target}): NAME '${ARG_NAME}' must match [a-z0-9][a-z0-9_-]*")
  endif()
  if(NOT ARG_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.+-]+)?$")
    message(FATAL_ERROR "hotswap_add_module(${target}): VERSION '${ARG_VERSION}' is not a semantic version")
  endif()
  if("WARNINGS" IN_LIST ARG_KEYWORDS_MISSING_VALUES OR DEFINED ARG_WARNINGS)
    set(warnings ${ARG_WARNINGS})
  elseif(DEFINED HOTSWAP_MODULE_WARNINGS)
    set(warnings ${HOTSWAP_MODULE_WARNINGS})
  else()
    set(warnings -Wall -Wextra -Werror)
  endif()
  hotswap_script_path(check_unique_script check_no_gnu_unique.cmake)
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE hotswap::module_sdk ${ARG_LINK})
  target_compile_definitions(${target} PRIVATE
    HOTSWAP_MODULE_NAME="${ARG_NAME}" HOTSWAP_MODULE_VERSION="${ARG_VERSION}")
  target_compile_options(${target} PRIVATE ${warnings} -fvisibility=hidden
    $<$<COMPILE_LANGUAGE:CXX>:-fvisibility-inlines-hidden -fno-gnu-unique>)
  if(NOT CMAKE_CXX_STANDARD)
    # module.hpp needs C++17; a project that chose a standard keeps its own.
    set_target_properties(${target} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  endif()
  if(NOT HOTSWAP_SANITIZE)
    # Every symbol must resolve inside the module or its libraries, never in the host.
    # (Sanitizer builds resolve __asan_* from the executable, so the check is off there.)
    target_link_options(${target} PRIVATE -Wl,-z,defs)
  endif()
  # UNITY_BUILD OFF: a project built with CMAKE_UNITY_BUILD (hotswap's own
  # `make test` is) would compile a module's sources through a generated file,
  # which turns its anonymous-namespace types into -Wsubobject-linkage errors.
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${ARG_NAME}-${ARG_VERSION}" SUFFIX ".so"
    HOTSWAP_MODULE_NAME "${ARG_NAME}" HOTSWAP_MODULE_VERSION "${ARG_VERSION}" UNITY_BUILD OFF)
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR})
  endif()
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DLIBRARY=$<TARGET_FILE:${target}> -P ${check_unique_script}
    VERBATIM)
endfunction()
