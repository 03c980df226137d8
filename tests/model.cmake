# The model check of the thread front end's protocol: tests/model/run_spin.sh
# verifies the Promela model tests/model/fifolock_mt.pml with spin (skipped if
# spin is missing: .ci/run installs it), in several configurations,
# then requires spin to find every deliberate bug of the model. It reads no
# build output, so it is registered only in the plain build (not in sanitizer
# or mutant builds); skip it with `ctest -LE model` or configure with
# -DFIFOLOCK_MODEL_CHECK=OFF. It takes a few minutes on one core and up to a
# few GB of memory; the verifiers and any counterexample trail stay in
# <build>/model/<configuration> and <build>/model/mutants.
if(NOT FIFOLOCK_SANITIZE AND NOT CMAKE_CROSSCOMPILING)
  option(FIFOLOCK_MODEL_CHECK "Model-check the thread lock's protocol with spin (slow)" ON)
  find_program(FIFOLOCK_MODEL_BASH bash)
  if(FIFOLOCK_MODEL_CHECK AND FIFOLOCK_MODEL_BASH)
    # One test per configuration (run_spin.sh --list names them) and one for
    # the mutants, so that `ctest -j` runs them side by side; COST starts
    # them first, as they take longest.
    execute_process(COMMAND ${FIFOLOCK_MODEL_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/model/run_spin.sh --list
      OUTPUT_VARIABLE FIFOLOCK_MODEL_CONFIGS OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE FIFOLOCK_MODEL_LIST_RC)
    if(NOT FIFOLOCK_MODEL_LIST_RC EQUAL 0 OR FIFOLOCK_MODEL_CONFIGS STREQUAL "")
      message(FATAL_ERROR "tests/model/run_spin.sh --list failed: the model check has no configurations")
    endif()
    string(REPLACE "\n" ";" FIFOLOCK_MODEL_CONFIGS "${FIFOLOCK_MODEL_CONFIGS}")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
      ${CMAKE_CURRENT_SOURCE_DIR}/model/run_spin.sh)
    foreach(config ${FIFOLOCK_MODEL_CONFIGS})
      add_test(NAME model_spin_${config}
        COMMAND ${CMAKE_COMMAND} -E env MODEL_DIR=${CMAKE_BINARY_DIR}/model/${config}
          ${FIFOLOCK_MODEL_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/model/run_spin.sh --config ${config})
    endforeach()
    add_test(NAME model_spin_mutants
      COMMAND ${CMAKE_COMMAND} -E env MODEL_DIR=${CMAKE_BINARY_DIR}/model/mutants
        ${FIFOLOCK_MODEL_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/model/run_spin.sh --mutants)
    foreach(config ${FIFOLOCK_MODEL_CONFIGS} mutants)
      set_tests_properties(model_spin_${config} PROPERTIES TIMEOUT 1800 SKIP_RETURN_CODE 77
        LABELS "model" COST 10000)
    endforeach()
  elseif(FIFOLOCK_MODEL_CHECK)
    message(STATUS "bash not found: the model check is not registered")
  endif()
endif()
