# The two test tiers (docs/testing.md).
#
#   quick   every test of behaviour: `make test`, `ctest -L quick`. Minutes.
#   slow    the rest, which needs minutes or extra tools: valgrind, the spin
#           models and their mutants, the mutation check, the torture test,
#           the etcd cluster's fault tests, packaging and install, the ABI check.
#
# A test is slow when one of its labels is in FIFOLOCK_SLOW_LABELS; every
# other test is quick. fifolock_label_tiers() adds the tier to the labels of
# each test of the directory that calls it, once all its tests are added
# (CMake before 3.28 sets test properties only from the test's directory).
set(FIFOLOCK_SLOW_LABELS valgrind model mutants torture etcd-faults packaging install abi)

function(fifolock_label_tiers)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t IN LISTS tests)
    get_test_property(${t} LABELS labels)
    set(tier quick)
    foreach(l IN LISTS labels)
      if(l IN_LIST FIFOLOCK_SLOW_LABELS)
        set(tier slow)
      endif()
    endforeach()
    set_property(TEST ${t} APPEND PROPERTY LABELS ${tier})
  endforeach()
endfunction()
