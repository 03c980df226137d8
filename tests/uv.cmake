# The libuv example, run with fixed seeds and checked by tests/uv_check.py:
# FIFO order per key, readers/writers exclusion, both outcomes of a cancel on
# timeout, nothing left held. Registered only where libuv is found (this file
# is included before examples/, so it looks for libuv itself) and builds its
# own copy of the example, so it runs with FIFOLOCK_EXAMPLES=OFF too.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(UV QUIET IMPORTED_TARGET libuv)
endif()
find_package(Python3 COMPONENTS Interpreter QUIET)
if(NOT UV_FOUND)
  message(STATUS "libuv not found (pkg-config libuv): skipping the libuv example's tests")
elseif(NOT Python3_Interpreter_FOUND)
  message(STATUS "python3 not found: skipping the libuv example's tests")
else()
  add_executable(test_uv_readers_writers ${PROJECT_SOURCE_DIR}/examples/uv_readers_writers.c)
  target_link_libraries(test_uv_readers_writers PRIVATE fifolock_static PkgConfig::UV)
  set(uv_check ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/uv_check.py
    $<TARGET_FILE:test_uv_readers_writers>)
  # Seeds chosen because their runs have both kinds of timeout: cancelled
  # while waiting (0) and granted before the continuation ran (EALREADY).
  # --repeat: a second run of the same seed must print the same; longer
  # ticks make a timer firing late (which voids the comparison) rarer.
  add_test(NAME uv_readers_writers_seed1
    COMMAND ${uv_check} --repeat --expect cancelled,released_unused --tick-ms 5 1)
  add_test(NAME uv_readers_writers_seed7
    COMMAND ${uv_check} --expect cancelled,released_unused 7)
  add_test(NAME uv_readers_writers_direct_seed3
    COMMAND ${uv_check} --direct --expect cancelled 3)
  set_tests_properties(uv_readers_writers_seed1 uv_readers_writers_seed7
    uv_readers_writers_direct_seed3 PROPERTIES TIMEOUT 120 LABELS "libuv;example")
  fifolock_test_needs(test_uv_readers_writers libuv example)
  # The etcd lock's libuv example, against a real etcd (skipped without one).
  if(FIFOLOCK_ETCD_BUILT)
    add_executable(test_etcd_uv ${PROJECT_SOURCE_DIR}/examples/etcd_uv.c)
    target_link_libraries(test_etcd_uv PRIVATE fifolock_etcd_static PkgConfig::UV)
    add_test(NAME etcd_uv_example COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/etcd/with_etcd.sh
      $<TARGET_FILE:test_etcd_uv>)
    set_tests_properties(etcd_uv_example PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77
      RESOURCE_LOCK etcd PASS_REGULAR_EXPRESSION "result=ok" LABELS "libuv;example;etcd")
    fifolock_test_needs(test_etcd_uv libuv example etcd)
  endif()
endif()
