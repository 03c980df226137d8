# The mutation check (tests/mutants/run_mutants.sh) as one test of the plain
# build: once per deliberate bug (a patch in tests/mutants/, applied to a
# copy of the tree) it builds the tests that can catch it and fails unless
# they do; about a minute on two CPUs. It runs alone (RUN_SERIAL): it builds
# with every CPU, and it caps each test at 10 s so that a mutant that
# deadlocks is caught in seconds, a cap that tests slowed by a neighbour
# could reach. Skip it with `ctest -LE mutants` or configure with
# -DFIFOLOCK_MUTATION_CHECK=OFF. The builds it makes never register it again.
if(NOT FIFOLOCK_SANITIZE AND NOT CMAKE_CROSSCOMPILING)
  option(FIFOLOCK_MUTATION_CHECK "Run the mutation check as a test (slow)" ON)
  if(FIFOLOCK_MUTATION_CHECK)
    add_test(NAME mutants COMMAND ${CMAKE_COMMAND} -E env
      MUTANTS_DIR=${CMAKE_BINARY_DIR}/mutants
      bash ${CMAKE_CURRENT_SOURCE_DIR}/mutants/run_mutants.sh)
    set_tests_properties(mutants PROPERTIES TIMEOUT 1500 RUN_SERIAL TRUE LABELS "mutants")
  endif()
endif()

# A quick check that every mutant's patch still applies to src/ (the full
# check above takes minutes): a patch that no longer fits must be refreshed.
add_test(NAME mutant_patches_apply
  COMMAND bash -c "cd '${PROJECT_SOURCE_DIR}' && for p in tests/mutants/*.patch; do git apply --check \"\$p\" || { echo \"\$p no longer applies: refresh it (see run_mutants.sh)\"; exit 1; }; done; echo \"all mutant patches apply\""
  )
set_tests_properties(mutant_patches_apply PROPERTIES TIMEOUT 60 LABELS "engine")
