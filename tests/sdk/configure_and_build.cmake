# cmake -DSOURCE=<project> -DBUILD=<dir> -DGENERATOR=<g> -DCXX=<c++> -DCC=<cc>
#       [-DCONFIGURE_ARGS=<a>|<b>...] [-DTARGETS=<t>|...] [-DMUST_NOT_EXIST=<path>|...]
#       -P configure_and_build.cmake
# Configures a fresh build of SOURCE and builds TARGETS (default: all) with two
# jobs, unoptimized (the quickest compile); then fails if any of MUST_NOT_EXIST
# (relative to BUILD) exists.
file(REMOVE_RECURSE ${BUILD})
string(REPLACE "|" ";" configure_args "${CONFIGURE_ARGS}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${BUILD} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_TYPE=
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON --no-warn-unused-cli ${configure_args}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE} failed")
endif()
set(target_args "")
if(TARGETS)
  string(REPLACE "|" ";" targets "${TARGETS}")
  set(target_args --target ${targets})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD} -j2 ${target_args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building ${SOURCE} failed")
endif()
string(REPLACE "|" ";" forbidden "${MUST_NOT_EXIST}")
foreach(path IN LISTS forbidden)
  if(EXISTS ${BUILD}/${path})
    message(FATAL_ERROR "${BUILD}/${path} exists: it should not have been configured")
  endif()
endforeach()
