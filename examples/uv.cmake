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

# The etcd lock on a libuv loop, where the etcd library is built too.
if(FIFOLOCK_ETCD_BUILT)
  add_executable(example_etcd_uv ${CMAKE_CURRENT_LIST_DIR}/etcd_uv.c)
  set_target_properties(example_etcd_uv PROPERTIES OUTPUT_NAME etcd_uv)
  target_link_libraries(example_etcd_uv PRIVATE fifolock_etcd_static PkgConfig::UV)
endif()
