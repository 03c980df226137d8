# The etcd lock (src/etcd/), against a real etcd that each test program starts
# on loopback (tests/etcd/etcd-up.sh) on free ports, with its own data dir,
# and stops. A test exits 77 (skipped) only when etcd is not installed;
# without libcurl or json-c the library is not built and neither are these
# tests. Nothing is shared between them, so they need no RUN_SERIAL; the
# resource lock `etcd` only keeps two of them (each with its own etcd, one
# with a three-member cluster whose elections time out after 500 ms) from
# running at once, while the other CPU runs the rest of the suite.
if(NOT FIFOLOCK_ETCD_BUILT)
  return()
endif()

function(fifolock_add_etcd_test name)
  fifolock_add_test(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE fifolock_etcd_static
    PkgConfig::FIFOLOCK_CURL PkgConfig::FIFOLOCK_JSONC)
  target_compile_definitions(${name} PRIVATE
    FIFOLOCK_ETCD_SCRIPTS="${CMAKE_CURRENT_SOURCE_DIR}/etcd" _GNU_SOURCE)
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 RESOURCE_LOCK etcd)
  if(TEST ${name}_valgrind)
    set_tests_properties(${name}_valgrind PROPERTIES SKIP_RETURN_CODE 77 RESOURCE_LOCK etcd)
  endif()
endfunction()

fifolock_add_etcd_test(test_etcd test_etcd.c TIMEOUT 60 LABELS etcd)
# The non-blocking API (fifolock_etcd_acquire_async() and its poll loop). It
# times deadlines and kills etcd at its end: not under valgrind.
fifolock_add_etcd_test(test_etcd_async test_etcd_async.c TIMEOUT 90 LABELS etcd NO_VALGRIND)
# Killers and forks (kill -9, SIGSTOP, 20 processes) do not run under valgrind.
fifolock_add_etcd_test(test_etcd_procs test_etcd_procs.c TIMEOUT 90 LABELS etcd NO_VALGRIND)
# (OpenSSL under valgrind would double the time of the etcd tests; ASan covers it.)
fifolock_add_etcd_test(test_etcd_secure test_etcd_secure.c TIMEOUT 90 LABELS etcd NO_VALGRIND)
fifolock_add_etcd_test(test_etcd_cluster test_etcd_cluster.c TIMEOUT 90 LABELS etcd etcd-faults NO_VALGRIND)
# etcd away (paused, or killed and started again) longer than a session's TTL.
fifolock_add_etcd_test(test_etcd_outage test_etcd_outage.c TIMEOUT 90 LABELS etcd etcd-faults NO_VALGRIND)

# The protocol's model (tests/etcd/lock.pml), checked with spin, with its mutants.
find_program(FIFOLOCK_ETCD_BASH bash)
if(FIFOLOCK_ETCD_BASH AND NOT FIFOLOCK_SANITIZE AND NOT FIFOLOCK_MUTANT)
  add_test(NAME etcd_model_spin COMMAND ${CMAKE_COMMAND} -E env
    MODEL_DIR=${CMAKE_BINARY_DIR}/etcd-model
    ${FIFOLOCK_ETCD_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/etcd/run_spin.sh)
  set_tests_properties(etcd_model_spin PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
    LABELS "etcd;model")
endif()
