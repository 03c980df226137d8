# The libuv example, built only where libuv is found through pkg-config.
# Included by examples/CMakeLists.txt; everything else builds without libuv.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(UV QUIET IMPORTED_TARGET libuv)
endif()
if(NOT UV_FOUND)
  message(STATUS "libuv not found (pkg-config libuv): skipping the libuv example")
  return()
endif()

add_executable(example_uv_readers_writers ${CMAKE_CURRENT_LIST_DIR}/uv_readers_writers.c)
set_target_properties(example_uv_readers_writers PROPERTIES OUTPUT_NAME uv_readers_writers)
target_link_libraries(example_uv_readers_writers PRIVATE fifolock_static PkgConfig::UV)
