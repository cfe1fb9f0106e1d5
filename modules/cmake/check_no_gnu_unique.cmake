# cmake -DLIBRARY=<path> -P check_no_gnu_unique.cmake
# Fails when the library has an STB_GNU_UNIQUE symbol (glibc pins such a library forever).
find_program(READELF readelf REQUIRED)
execute_process(COMMAND ${READELF} -sW ${LIBRARY} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf failed on ${LIBRARY}")
endif()
string(REGEX MATCHALL "[^\n]* UNIQUE [^\n]*" unique_lines "${symbols}")
if(unique_lines)
  string(REPLACE ";" "\n" pretty "${unique_lines}")
  file(REMOVE ${LIBRARY})
  message(FATAL_ERROR "${LIBRARY} has STB_GNU_UNIQUE symbols; glibc would never unload it and a reload "
    "would keep running old code. Build it with -fno-gnu-unique (hotswap_add_module does).\n${pretty}")
endif()
