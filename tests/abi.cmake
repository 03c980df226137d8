# The ABI check (tests/abi/check.sh, abidiff): the shared libraries against
# the ABI of the last release in abi/. Only in the plain build (a sanitizer
# build's libraries differ by their instrumentation, not their ABI), and
# only for ELF libraries.
if(FIFOLOCK_SANITIZE OR CMAKE_CROSSCOMPILING OR NOT FIFOLOCK_LINUX)
  return()
endif()
set(FIFOLOCK_ABI_RELEASE 1.0.0)
add_test(NAME abi_libfifolock
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/abi/check.sh $<TARGET_FILE:fifolock_shared>
    ${PROJECT_SOURCE_DIR}/abi/libfifolock-${FIFOLOCK_ABI_RELEASE}.abi ${PROJECT_SOURCE_DIR}/include)
set_tests_properties(abi_libfifolock PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS "abi")
if(FIFOLOCK_ETCD_BUILT)
  add_test(NAME abi_libfifolock_etcd
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/abi/check.sh $<TARGET_FILE:fifolock_etcd_shared>
      ${PROJECT_SOURCE_DIR}/abi/libfifolock_etcd-${FIFOLOCK_ABI_RELEASE}.abi ${PROJECT_SOURCE_DIR}/include)
  set_tests_properties(abi_libfifolock_etcd PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS "abi")
endif()
