# The engine's tests: unit tests of fifolock.h and a randomized model-based test.
# test_engine makes allocation fail on demand through the library's one seam
# (fifolock__alloc, src/internal.h) to reach the ENOMEM paths.
fifolock_add_test(test_engine test_engine.c LABELS engine)
fifolock_add_test(test_model test_model.c LABELS engine)
fifolock_add_test(test_rule test_rule.c LABELS engine)
fifolock_add_test(test_weighted test_weighted.c LABELS engine)
