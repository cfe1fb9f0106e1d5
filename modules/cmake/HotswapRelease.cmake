# hotswap_add_release(<target> NAME <release-name> VERSION <semver>
#                     MODULES <module-target>...   (targets made by hotswap_add_module)
#                     [APPUPS <appup.json>...]     (each names its module and version inside)
#                     [CONFIG <runtime.json>]      (runtime config template)
#                     [OUTPUT_DIR <dir>])          (default: ${CMAKE_BINARY_DIR}/releases)
#
# Assembles <OUTPUT_DIR>/<name>-<version>/ with
#   manifest.json            release name/version; per module: version, file, sha256, appup
#   modules/<m>-<v>.so       the module libraries
#   appups/<m>-<v>.appup.json
#   runtime.json             the runtime config template
#   bin/hotswap              the host binary
# and <OUTPUT_DIR>/<name>-<version>.tar.gz of that folder's contents, ready for `hotswap unpack`.
set(HOTSWAP_ASSEMBLE_RELEASE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/assemble_release.cmake)

function(hotswap_add_release target)
  cmake_parse_arguments(ARG "" "NAME;VERSION;CONFIG;OUTPUT_DIR" "MODULES;APPUPS" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_VERSION OR NOT ARG_MODULES)
    message(FATAL_ERROR "hotswap_add_release(${target}): NAME, VERSION and MODULES are required")
  endif()
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/releases)
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
      -DHOTSWAP_BINARY=$<TARGET_FILE:hotswap>
      -P ${HOTSWAP_ASSEMBLE_RELEASE_SCRIPT}
    DEPENDS ${ARG_MODULES} hotswap ${appups} ${config} ${HOTSWAP_ASSEMBLE_RELEASE_SCRIPT}
    COMMENT "Assembling release ${ARG_NAME} ${ARG_VERSION}"
    VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${stamp})
  # Where the release folder is: hotswap_add_rehearsal_test reads it.
  set_target_properties(${target} PROPERTIES HOTSWAP_RELEASE_DIR ${ARG_OUTPUT_DIR}/${ARG_NAME}-${ARG_VERSION})
endfunction()
