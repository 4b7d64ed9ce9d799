// The CUDA table kernels: one thread per element or per row, each running
// the shared routines of table_math.h.  Built with -fmad=false and IEEE
// division (CMakeLists.txt), so that the floating point is the host's.
#include "cuda/kernels.h"

#include "tables/table_math.h"

namespace featcodec {
namespace cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <class T>
__global__ void scale_index_kernel(const T* scales, int64_t n, const double* table, int32_t n_table, int32_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) out[i] = scale_index(static_cast<double>(scales[i]), table, n_table);
}

template <class T>
__global__ void element_kernel(Family family, const int32_t* values, const T* means, const T* scales, int64_t n,
                               int precision, double cutoff, uint32_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const double mean = static_cast<double>(means[i]), scale = static_cast<double>(scales[i]);
  if (!(mean >= -kMaxElementMean && mean <= kMaxElementMean && scale >= kMinElementScale &&
        scale <= kMaxElementScale)) {
    out[i] = 0;  // no valid interval has frequency 0: marks a bad mean or scale
    return;
  }
  out[i] = element_interval(element_model(family, mean, scale, precision, cutoff), values[i]);
}

__global__ void half_width_kernel(Family family, const double* scales, int64_t n, int precision, double tail_mass,
                                  int64_t* h) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n) h[i] = parametric_half_width(family, scales[i], precision, tail_mass);
}

__device__ RowScratch row_scratch(const RowScratch& s, int64_t at) {
  return {s.pmf + at, s.weight + at, s.support_weight + at, s.trial + at, s.heaps + 4 * at};
}

__global__ void parametric_rows_kernel(Family family, const double* scales, const int64_t* h, const int64_t* begin,
                                       int64_t n, int precision, const uint64_t* lg, RowScratch scratch,
                                       uint32_t* freqs, int* status) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const int64_t at = begin[i], size = 2 * h[i] + 2;
  const RowScratch row = row_scratch(scratch, at);
  parametric_pmf(family, scales[i], h[i], row.pmf);
  status[i] = quantize_pmf_core(row.pmf, size, precision, freqs + at, row, lg);
}

__global__ void pmf_rows_kernel(const double* pmf, int64_t n_rows, int64_t stride, const uint32_t* lengths,
                                const int64_t* begin, int precision, bool optimal_support, const uint64_t* lg,
                                RowScratch scratch, uint32_t* freqs, int64_t* first, int64_t* count, int* status,
                                int64_t* bad) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n_rows) return;
  const int64_t at = begin[i];
  status[i] = pmf_row_tables(pmf + i * stride, lengths[i], precision, optimal_support, row_scratch(scratch, at), lg,
                             freqs + at, first + i, count + i, bad + i);
}

}  // namespace

void launch_scale_index(const void* scales, bool float32, int64_t n, const double* table, int32_t n_table,
                        int32_t* out, cudaStream_t stream) {
  if (n == 0) return;
  if (float32)
    scale_index_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(scales), n, table, n_table, out);
  else
    scale_index_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const double*>(scales), n, table, n_table, out);
}

void launch_element_intervals(Family family, const int32_t* values, const void* means, const void* scales,
                              bool float32, int64_t n, int precision, double cutoff, uint32_t* out,
                              cudaStream_t stream) {
  if (n == 0) return;
  if (float32)
    element_kernel<<<blocks_for(n), kThreads, 0, stream>>>(family, values, static_cast<const float*>(means),
                                                           static_cast<const float*>(scales), n, precision, cutoff, out);
  else
    element_kernel<<<blocks_for(n), kThreads, 0, stream>>>(family, values, static_cast<const double*>(means),
                                                           static_cast<const double*>(scales), n, precision, cutoff,
                                                           out);
}

void launch_half_widths(Family family, const double* scales, int64_t n, int precision, double tail_mass, int64_t* h,
                        cudaStream_t stream) {
  if (n == 0) return;
  half_width_kernel<<<blocks_for(n), kThreads, 0, stream>>>(family, scales, n, precision, tail_mass, h);
}

void launch_parametric_rows(Family family, const double* scales, const int64_t* h, const int64_t* begin, int64_t n,
                            int precision, const uint64_t* lg, RowScratch scratch, uint32_t* freqs, int* status,
                            cudaStream_t stream) {
  if (n == 0) return;
  parametric_rows_kernel<<<blocks_for(n), kThreads, 0, stream>>>(family, scales, h, begin, n, precision, lg, scratch,
                                                                 freqs, status);
}

void launch_pmf_rows(const double* pmf, int64_t n_rows, int64_t stride, const uint32_t* lengths,
                     const int64_t* begin, int precision, bool optimal_support, const uint64_t* lg,
                     RowScratch scratch, uint32_t* freqs, int64_t* first, int64_t* count, int* status, int64_t* bad,
                     cudaStream_t stream) {
  if (n_rows == 0) return;
  pmf_rows_kernel<<<blocks_for(n_rows), kThreads, 0, stream>>>(pmf, n_rows, stride, lengths, begin, precision,
                                                               optimal_support, lg, scratch, freqs, first, count,
                                                               status, bad);
}

}  // namespace cuda
}  // namespace featcodec
