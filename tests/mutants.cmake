# The mutation check (tests/mutants/run_mutants.sh) as one test of the plain
# build: it rebuilds the library and the tests once per deliberate bug (a
# patch in tests/mutants/, applied to a copy of the tree) and fails unless
# the tests catch every one. It takes minutes, so it
# runs alone (RUN_SERIAL); skip it with `ctest -LE mutants` or configure with
# -DFIFOLOCK_MUTATION_CHECK=OFF. The builds it makes never register it again.
if(NOT FIFOLOCK_SANITIZE)
  option(FIFOLOCK_MUTATION_CHECK "Run the mutation check as a test (slow)" ON)
  if(FIFOLOCK_MUTATION_CHECK)
    add_test(NAME mutants COMMAND ${CMAKE_COMMAND} -E env
      MUTANTS_DIR=${CMAKE_BINARY_DIR}/mutants
      bash ${CMAKE_CURRENT_SOURCE_DIR}/mutants/run_mutants.sh)
    set_tests_properties(mutants PROPERTIES TIMEOUT 1500 RUN_SERIAL TRUE LABELS "mutants")
  endif()
endif()
