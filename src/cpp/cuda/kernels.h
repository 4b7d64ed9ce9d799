// featcodec._cuda's kernels, as plain host functions on device pointers.
// Everything is enqueued on `stream`; nothing synchronizes.  Each kernel
// evaluates the routines of tables/table_math.h, the same code as the CPU
// builders, so its results equal theirs bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tables/table_math.h"

namespace featcodec {
namespace cuda {

// out[i] = scale_index(scales[i], table, n_table); -1 for NaN.
void launch_scale_index(const void* scales, bool float32, int64_t n, const double* table, int32_t n_table,
                        int32_t* out, cudaStream_t stream);

// out[i] = element_interval(element_model(family, means[i], scales[i], ...), values[i]).
// means and scales are float64, or float32 when `float32`.
void launch_element_intervals(Family family, const int32_t* values, const void* means, const void* scales,
                              bool float32, int64_t n, int precision, double cutoff, uint32_t* out,
                              cudaStream_t stream);

// h[i] = parametric_half_width(family, scales[i], precision, tail_mass).
void launch_half_widths(Family family, const double* scales, int64_t n, int precision, double tail_mass, int64_t* h,
                        cudaStream_t stream);

// Quantizer scratch (RowScratch, table_math.h) is one buffer per array for
// all rows: row i's slice starts at begin[i] (4 begin[i] for heaps), so
// 44 bytes per table entry.

// Row i of a zero-mean family: its 2 h[i] + 2 frequencies at freqs[begin[i]].
void launch_parametric_rows(Family family, const double* scales, const int64_t* h, const int64_t* begin, int64_t n,
                            int precision, const uint64_t* lg, RowScratch scratch, uint32_t* freqs, int* status,
                            cudaStream_t stream);

// Row i of a pmf (stride doubles per row), pmf_row_tables: its support's
// first column and column count at first[i], count[i], its count[i] + 1
// frequencies at freqs[begin[i]] (lengths[i] + 1 entries of room);
// status[i] a QuantizeStatus / RowStatus, bad[i] the entry.
void launch_pmf_rows(const double* pmf, int64_t n_rows, int64_t stride, const uint32_t* lengths,
                     const int64_t* begin, int precision, bool optimal_support, const uint64_t* lg,
                     RowScratch scratch, uint32_t* freqs, int64_t* first, int64_t* count, int* status, int64_t* bad,
                     cudaStream_t stream);

}  // namespace cuda
}  // namespace featcodec
