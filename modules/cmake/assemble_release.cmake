# Run by hotswap_add_release at build time (cmake -P). Inputs: NAME, VERSION,
# OUTPUT_DIR, MODULES ("name|version|file" joined by ','), APPUPS (files joined by ','),
# CONFIG (may be empty), HOTSWAP_BINARY, STRIP (a strip program, or empty to copy
# the host binary as it is), CHECK_COMMAND (a hotswap binary to run
# `check <release dir>` with, or empty).
#
# Every input is checked before anything is written: an appup or config that is
# not strict JSON, an appup without "module" or "version", or one that belongs to
# no module version of this release fails the build with the file and the field.
cmake_minimum_required(VERSION 3.21)  # string(JSON), file(COPY_FILE)
include(${CMAKE_CURRENT_LIST_DIR}/strict_json.cmake)

set(release "release ${NAME} ${VERSION}")

# refuse(<message>): stops the build. The message goes out on one line
# as it is (message(FATAL_ERROR) would wrap it at 80 columns, splitting a path).
function(refuse problem)
  message(NOTICE "error: ${problem}")
  message(FATAL_ERROR "hotswap_add_release: ${release} not assembled (the error above)")
endfunction()

# fail(<file> <what is wrong>)
function(fail file problem)
  refuse("${file}: ${problem}")
endfunction()

# read_strict_json(<file> <out-var>): the file's text, which must be one strict JSON object.
function(read_strict_json file out_var)
  if(NOT EXISTS "${file}")
    fail("${file}" "no such file")
  endif()
  file(READ "${file}" text)
  hotswap_check_strict_json("${text}" json_error)
  if(json_error)
    fail("${file}" "invalid JSON at ${json_error}")
  endif()
  string(JSON type TYPE "${text}")
  if(NOT type STREQUAL "OBJECT")
    fail("${file}" "expected a JSON object at the top level, got ${type}")
  endif()
  set(${out_var} "${text}" PARENT_SCOPE)
endfunction()

# string_field(<file> <text> <field> <out-var>): a top-level string member.
function(string_field file text field out_var)
  string(JSON type ERROR_VARIABLE missing TYPE "${text}" ${field})
  if(missing)
    fail("${file}" "field \"${field}\" is missing")
  endif()
  if(NOT type STREQUAL "STRING")
    fail("${file}" "field \"${field}\" must be a string, got ${type}")
  endif()
  string(JSON value GET "${text}" ${field})
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

# The release's modules: name -> version and file.
string(REPLACE "," ";" module_list "${MODULES}")
set(module_names "")
foreach(spec IN LISTS module_list)
  string(REPLACE "|" ";" parts "${spec}")
  list(GET parts 0 m_name)
  list(GET parts 1 m_version)
  list(GET parts 2 m_file)
  if(m_name IN_LIST module_names)
    refuse("${release} has module ${m_name} twice (${module_version_${m_name}} and ${m_version}): \
a release ships one version of each module")
  endif()
  list(APPEND module_names ${m_name})
  set(module_version_${m_name} ${m_version})
  set(module_file_${m_name} ${m_file})
endforeach()
string(JOIN ", " module_names_text ${module_names})

# Which appup belongs to which module: the appup says so itself, and it must
# name a module of this release with exactly that module's version (an appup
# describes the upgrades to and from its own version; any other one would be
# left out of the manifest and the host would find none).
string(REPLACE "," ";" appup_list "${APPUPS}")
foreach(appup IN LISTS appup_list)
  read_strict_json("${appup}" appup_text)
  string_field("${appup}" "${appup_text}" module a_module)
  string_field("${appup}" "${appup_text}" version a_version)
  if(NOT a_module IN_LIST module_names)
    fail("${appup}" "field \"module\" is \"${a_module}\", but the release ships no such module \
(its modules: ${module_names_text})")
  endif()
  if(NOT a_version STREQUAL module_version_${a_module})
    fail("${appup}" "field \"version\" is \"${a_version}\", but the release ships ${a_module} \
${module_version_${a_module}}: an appup belongs to the module version it upgrades to; \
give each release only the appup of its own module version")
  endif()
  if(DEFINED appup_of_${a_module})
    fail("${appup}" "a second appup for ${a_module} ${a_version} (the first: ${appup_of_${a_module}})")
  endif()
  set(appup_of_${a_module} ${appup})
endforeach()

if(CONFIG)
  read_strict_json("${CONFIG}" config_text)
endif()

set(dir ${OUTPUT_DIR}/${NAME}-${VERSION})
file(REMOVE_RECURSE ${dir})
file(MAKE_DIRECTORY ${dir}/modules ${dir}/appups ${dir}/bin)

set(modules_json "[]")
set(index 0)
foreach(m_name IN LISTS module_names)
  set(m_version ${module_version_${m_name}})
  set(so modules/${m_name}-${m_version}.so)
  file(COPY_FILE ${module_file_${m_name}} ${dir}/${so})
  file(SHA256 ${dir}/${so} m_sha)
  set(entry "{}")
  string(JSON entry SET "${entry}" name "\"${m_name}\"")
  string(JSON entry SET "${entry}" version "\"${m_version}\"")
  string(JSON entry SET "${entry}" file "\"${so}\"")
  string(JSON entry SET "${entry}" sha256 "\"${m_sha}\"")
  if(DEFINED appup_of_${m_name})
    set(rel appups/${m_name}-${m_version}.appup.json)
    file(COPY_FILE ${appup_of_${m_name}} ${dir}/${rel})
    string(JSON entry SET "${entry}" appup "\"${rel}\"")
  endif()
  string(JSON modules_json SET "${modules_json}" ${index} "${entry}")
  math(EXPR index "${index} + 1")
endforeach()

set(manifest "{}")
string(JSON manifest SET "${manifest}" release "\"${NAME}\"")
string(JSON manifest SET "${manifest}" version "\"${VERSION}\"")
if(CONFIG)
  file(COPY_FILE ${CONFIG} ${dir}/runtime.json)
  string(JSON manifest SET "${manifest}" config "\"runtime.json\"")
endif()
string(JSON manifest SET "${manifest}" modules "${modules_json}")
file(WRITE ${dir}/manifest.json "${manifest}\n")

# The host binary: stripped of its debug info (tens of MB in a debug-info build),
# which stays in the binary the build made.
if(STRIP)
  execute_process(COMMAND ${STRIP} --strip-debug --strip-unneeded -o ${dir}/bin/hotswap ${HOTSWAP_BINARY}
    RESULT_VARIABLE rc ERROR_VARIABLE strip_error)
  if(NOT rc EQUAL 0)
    refuse("${STRIP} failed on ${HOTSWAP_BINARY}: ${strip_error}")
  endif()
else()
  file(COPY_FILE ${HOTSWAP_BINARY} ${dir}/bin/hotswap)
endif()

if(CHECK_COMMAND)
  execute_process(COMMAND ${CHECK_COMMAND} check ${dir} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    file(REMOVE_RECURSE ${dir})  # nothing may read a release the check refused
    refuse("`hotswap check ${dir}` refused ${release}:\n${out}")
  endif()
endif()

file(GLOB_RECURSE entries RELATIVE ${dir} ${dir}/*)
execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf ${OUTPUT_DIR}/${NAME}-${VERSION}.tar.gz -- ${entries}
  WORKING_DIRECTORY ${dir} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cannot create ${OUTPUT_DIR}/${NAME}-${VERSION}.tar.gz")
endif()
