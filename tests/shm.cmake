# The shared-memory lock (src/shm.c). Its tests fork and kill processes; a
# deadlock fails by the timeout, never hangs. The torture test kills hundreds
# of processes at random moments: not under valgrind (too slow to be useful,
# and the killed children would report as errors).
if(NOT FIFOLOCK_SHM)
  return()
endif()
fifolock_add_test(test_shm test_shm.c TIMEOUT 120 LABELS shm)
fifolock_add_test(test_shm_convert test_shm_convert.c TIMEOUT 120 LABELS shm)
fifolock_add_test(test_shm_convert_stress test_shm_convert_stress.c TIMEOUT 60 LABELS shm stress NO_VALGRIND)
fifolock_add_test(test_shm_torture test_shm_torture.c TIMEOUT 120 LABELS shm stress torture NO_VALGRIND)
# The command line (tools/), if it is built.
if(TARGET fifolock_tool)
  # The torture test also kills the tool and its command apart.
  set_tests_properties(test_shm_torture PROPERTIES
    ENVIRONMENT "FIFOLOCK_TOOL=$<TARGET_FILE:fifolock_tool>")
  find_program(FIFOLOCK_SHM_BASH bash)
  if(FIFOLOCK_SHM_BASH)
    set(FIFOLOCK_CLI_FLAVOUR plain)
    if(FIFOLOCK_ETCD_BUILT)
      set(FIFOLOCK_CLI_FLAVOUR etcd)
    endif()
    add_test(NAME test_fifolock_cli
      COMMAND ${FIFOLOCK_SHM_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/test_fifolock_cli.sh
        $<TARGET_FILE:fifolock_tool> ${FIFOLOCK_CLI_FLAVOUR})
    set_tests_properties(test_fifolock_cli PROPERTIES TIMEOUT 60 LABELS "shm;tool")
    fifolock_test_needs(fifolock_tool shm tool)
  endif()
endif()
# The spin model of the protocol (tests/model/fifolock_shm.pml, processes
# that die at any step), as tests/model.cmake does for the thread lock: only
# in the plain build, about two minutes.
if(NOT FIFOLOCK_SANITIZE AND NOT FIFOLOCK_MUTANT AND FIFOLOCK_MODEL_CHECK)
  find_program(FIFOLOCK_SHM_MODEL_BASH bash)
  if(FIFOLOCK_SHM_MODEL_BASH)
    add_test(NAME model_spin_shm
      COMMAND ${CMAKE_COMMAND} -E env MODEL_DIR=${CMAKE_BINARY_DIR}/model-shm
        ${FIFOLOCK_SHM_MODEL_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/model/run_spin_shm.sh)
    set_tests_properties(model_spin_shm PROPERTIES TIMEOUT 1200 SKIP_RETURN_CODE 77
      LABELS "model;shm")
  endif()
endif()
