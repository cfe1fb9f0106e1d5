# cmake -DBUILD_DIR=<hotswap build> -DPREFIX=<dir> -P install_to_prefix.cmake
# A fresh `cmake --install` of the hotswap build into PREFIX.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${PREFIX} failed")
endif()
foreach(f bin/hotswap include/hotswap/module.h include/hotswap/module.hpp
          lib/cmake/hotswap/hotswapConfig.cmake lib/cmake/hotswap/hotswapConfigVersion.cmake
          share/pkgconfig/hotswap.pc share/doc/hotswap/examples/hotswap.service)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
