# The Python module's tests (FIFOLOCK_PYTHON_TESTS): setup.py builds the
# extension into ${CMAKE_BINARY_DIR}/python, with the project's warnings as
# errors, as part of the build; CTest runs the unittest suite from there.
# Nothing is installed.
if(FIFOLOCK_PYTHON_TESTS)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  set(FIFOLOCK_PY_LIB ${CMAKE_BINARY_DIR}/python)
  set(FIFOLOCK_PY_TMP ${CMAKE_BINARY_DIR}/python-build)
  file(GLOB FIFOLOCK_PY_DEPENDS CONFIGURE_DEPENDS
    ${PROJECT_SOURCE_DIR}/python/*.c
    ${PROJECT_SOURCE_DIR}/python/*.h
    ${PROJECT_SOURCE_DIR}/python/fifolock/*
    ${PROJECT_SOURCE_DIR}/src/*.c
    ${PROJECT_SOURCE_DIR}/src/*.h
    ${PROJECT_SOURCE_DIR}/src/etcd/*.c
    ${PROJECT_SOURCE_DIR}/src/etcd/*.h
    ${PROJECT_SOURCE_DIR}/include/*.h)
  add_custom_command(
    OUTPUT ${FIFOLOCK_PY_TMP}/built.stamp
    COMMAND ${CMAKE_COMMAND} -E make_directory ${FIFOLOCK_PY_TMP}
    COMMAND ${CMAKE_COMMAND} -E env FIFOLOCK_WERROR=1 PYTHONDONTWRITEBYTECODE=1
            ${Python3_EXECUTABLE} setup.py -q
            egg_info --egg-base ${FIFOLOCK_PY_TMP}
            build --build-base ${FIFOLOCK_PY_TMP} --build-lib ${FIFOLOCK_PY_LIB} --force
    COMMAND ${CMAKE_COMMAND} -E touch ${FIFOLOCK_PY_TMP}/built.stamp
    DEPENDS ${FIFOLOCK_PY_DEPENDS} ${PROJECT_SOURCE_DIR}/setup.py
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    COMMENT "Building the Python extension into ${FIFOLOCK_PY_LIB}"
    VERBATIM)
  add_custom_target(fifolock_python ALL DEPENDS ${FIFOLOCK_PY_TMP}/built.stamp)

  add_test(NAME python_unittest
    COMMAND ${Python3_EXECUTABLE} -m unittest discover -v
            -s ${CMAKE_CURRENT_SOURCE_DIR}/python -t ${CMAKE_CURRENT_SOURCE_DIR}/python)
  set_tests_properties(python_unittest PROPERTIES
    ENVIRONMENT "PYTHONPATH=${FIFOLOCK_PY_LIB};PYTHONDONTWRITEBYTECODE=1"
    TIMEOUT 600 LABELS python)
endif()

# The package installs as the README says (pip wheel, pip install ., --no-build-isolation,
# -e), offline, on a copy of the tree. About a minute; label python and packaging.
if(FIFOLOCK_PYTHON_TESTS)
  add_test(NAME python_packaging
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/packaging/run.sh ${Python3_EXECUTABLE})
  set_tests_properties(python_packaging PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
    LABELS "python;packaging")
endif()
