/* A stand-in libcuda.so.1 that exports nothing: to the CUDA runtime it is a driver too old to
 * use (cudaErrorInsufficientDriver), as on a GPU host with an outdated driver. Used by
 * cuda_skip_rule_test.sh to check that CUDA tests FAIL there instead of skipping. */
int headroom_fake_cuda_driver = 1;
