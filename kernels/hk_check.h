/* hk_check: CUDA_CHECK, CUBLAS_CHECK and NCCL_CHECK for the GPU backend's C code.
 *
 * Each macro evaluates a CUDA runtime, cuBLAS or NCCL call once; on failure it
 * records the library's error string, the expression, the file and the line
 * through he_set() and makes the enclosing function return a herr code
 * (HE_EIO; HE_ENOMEM for an allocation failure). Never aborts: a worker
 * reports a GPU fault as an error like any other. Include cublas_v2.h or
 * nccl.h before using CUBLAS_CHECK or NCCL_CHECK.
 */
#ifndef HELIUM_HK_CHECK_H
#define HELIUM_HK_CHECK_H

#include <cuda_runtime_api.h>

#include "herr.h"

#define CUDA_CHECK(expr)                                                                                  \
    do {                                                                                                  \
        cudaError_t hk_e_ = (expr);                                                                       \
        if (hk_e_ != cudaSuccess)                                                                         \
            return he_set(hk_e_ == cudaErrorMemoryAllocation ? HE_ENOMEM : HE_EIO, "CUDA error %s (%s) in %s at %s:%d", \
                          cudaGetErrorName(hk_e_), cudaGetErrorString(hk_e_), #expr, __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(expr)                                                                              \
    do {                                                                                                \
        cublasStatus_t hk_s_ = (expr);                                                                  \
        if (hk_s_ != CUBLAS_STATUS_SUCCESS)                                                             \
            return he_set(hk_s_ == CUBLAS_STATUS_ALLOC_FAILED ? HE_ENOMEM : HE_EIO, "cuBLAS error %s in %s at %s:%d", \
                          cublasGetStatusString(hk_s_), #expr, __FILE__, __LINE__);                     \
    } while (0)

#define NCCL_CHECK(expr)                                                                               \
    do {                                                                                               \
        ncclResult_t hk_n_ = (expr);                                                                   \
        if (hk_n_ != ncclSuccess && hk_n_ != ncclInProgress)                                           \
            return he_set(HE_EIO, "NCCL error %s in %s at %s:%d", ncclGetErrorString(hk_n_), #expr,    \
                          __FILE__, __LINE__);                                                         \
    } while (0)

#endif
