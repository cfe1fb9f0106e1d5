# hotswap_add_release(<target> NAME <release-name> VERSION <semver>
#                     MODULES <module-target>...   (targets made by hotswap_add_module)
#                     [APPUPS <appup.json>...]     (each names its module and version inside)
#                     [CONFIG <runtime.json>]      (runtime config template)
#                     [OUTPUT_DIR <dir>]           (default: ${CMAKE_BINARY_DIR}/releases)
#                     [HOST_BINARY <target>])      (default: hotswap::hotswap)
#
# Assembles <OUTPUT_DIR>/<name>-<version>/ with
#   manifest.json            release name/version; per module: version, file, sha256, appup
#   modules/<m>-<v>.so       the module libraries
#   appups/<m>-<v>.appup.json
#   runtime.json             the runtime config template
#   bin/hotswap              the host binary (hotswap::hotswap, or HOST_BINARY: another
#                            executable target, as a test's fake host), stripped
# and <OUTPUT_DIR>/<name>-<version>.tar.gz of that folder's contents, ready for `hotswap unpack`.
#
# The build fails, naming the file and the field, when an appup or the config is
# not strict JSON (CMake's own reader lets trailing commas and comments pass; the
# host's does not), when an appup lacks "module" or "version", or when an appup
# does not belong to a module version of this release (each appup must name a
# module of MODULES with exactly that module's version).
#
# Variables read where the function is called:
#   HOTSWAP_RELEASE_STRIP (default ON)  strip the host binary put in the release;
#     the unstripped one stays where it was built (gdb: `symbol-file <build>/hotswap`).
#   HOTSWAP_RELEASE_CHECK (default ON, OFF when cross-compiling) run
#     `hotswap check <release dir>` at build time: every sha256, every appup parsed by
#     the runtime's own parser, every library loaded in a probe child with the
#     expected name, version and ABI. A release it refuses fails the build, naming
#     the file and the field. NO_CHECK skips it for one release (a test's
#     deliberately broken one).
# hotswap_script_path() and the scripts folder.
include(${CMAKE_CURRENT_LIST_DIR}/HotswapModule.cmake)

function(hotswap_add_release target)
  cmake_parse_arguments(ARG "NO_CHECK" "NAME;VERSION;CONFIG;OUTPUT_DIR;HOST_BINARY" "MODULES;APPUPS" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_VERSION OR NOT ARG_MODULES)
    message(FATAL_ERROR "hotswap_add_release(${target}): NAME, VERSION and MODULES are required")
  endif()
  if(NOT TARGET hotswap::hotswap)
    message(FATAL_ERROR "hotswap_add_release(${target}): no hotswap::hotswap target "
      "(use find_package(hotswap) or add_subdirectory() of the hotswap source tree)")
  endif()
  if(NOT ARG_HOST_BINARY)
    set(ARG_HOST_BINARY hotswap::hotswap)
  endif()
  hotswap_script_path(assemble_script assemble_release.cmake)
  hotswap_script_path(json_script strict_json.cmake)
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/releases)
  endif()
  if(NOT DEFINED HOTSWAP_RELEASE_STRIP)
    set(HOTSWAP_RELEASE_STRIP ON)
  endif()
  set(strip_program "")
  if(HOTSWAP_RELEASE_STRIP)
    if(NOT CMAKE_STRIP)
      message(FATAL_ERROR "hotswap_add_release(${target}): no strip program (CMAKE_STRIP); "
        "set HOTSWAP_RELEASE_STRIP OFF to ship the host binary unstripped")
    endif()
    set(strip_program ${CMAKE_STRIP})
  endif()
  set(check_command "")
  if(NOT DEFINED HOTSWAP_RELEASE_CHECK)
    if(CMAKE_CROSSCOMPILING)
      set(HOTSWAP_RELEASE_CHECK OFF)  # the host binary cannot run here
    else()
      set(HOTSWAP_RELEASE_CHECK ON)
    endif()
  endif()
  if(HOTSWAP_RELEASE_CHECK AND NOT ARG_NO_CHECK)
    set(check_command "$<TARGET_FILE:hotswap::hotswap>")
  endif()
  set(module_specs "")
  foreach(m IN LISTS ARG_MODULES)
    list(APPEND module_specs
      "$<TARGET_PROPERTY:${m},HOTSWAP_MODULE_NAME>|$<TARGET_PROPERTY:${m},HOTSWAP_MODULE_VERSION>|$<TARGET_FILE:${m}>")
  endforeach()
  set(appups "")
  foreach(a IN LISTS ARG_APPUPS)
    get_filename_component(a_abs ${a} ABSOLUTE)
    list(APPEND appups ${a_abs})
  endforeach()
  set(config "")
  if(ARG_CONFIG)
    get_filename_component(config ${ARG_CONFIG} ABSOLUTE)
  endif()
  set(stamp ${ARG_OUTPUT_DIR}/${ARG_NAME}-${ARG_VERSION}.tar.gz)
  string(REPLACE ";" "," module_arg "${module_specs}")
  string(REPLACE ";" "," appup_arg "${appups}")
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND}
      -DNAME=${ARG_NAME} -DVERSION=${ARG_VERSION} -DOUTPUT_DIR=${ARG_OUTPUT_DIR}
      "-DMODULES=${module_arg}" "-DAPPUPS=${appup_arg}" -DCONFIG=${config}
      -DHOTSWAP_BINARY=$<TARGET_FILE:${ARG_HOST_BINARY}> "-DSTRIP=${strip_program}"
      "-DCHECK_COMMAND=${check_command}"
      -P ${assemble_script}
    DEPENDS ${ARG_MODULES} hotswap::hotswap ${ARG_HOST_BINARY} ${appups} ${config} ${assemble_script} ${json_script}
    COMMENT "Assembling release ${ARG_NAME} ${ARG_VERSION}"
    VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${stamp})
  # Where the release folder is: hotswap_add_rehearsal_test reads it.
  set_target_properties(${target} PROPERTIES HOTSWAP_RELEASE_DIR ${ARG_OUTPUT_DIR}/${ARG_NAME}-${ARG_VERSION})
endfunction()
