// featcodec._core: the native core as seen from Python.  Arguments arrive
// already normalized by python/featcodec (dtypes, contiguity, broadcasting);
// the checks here guard the memory accesses, not the user experience.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "coder/chunk.h"
#include "coder/codec.h"
#include "tables/table_math.h"
#include "tables/scale_indexer.h"
#include "tables/tables.h"

namespace py = pybind11;
using namespace featcodec;

namespace {

using Int32Array = py::array_t<int32_t, py::array::c_style>;

// Describes `indexes` (an int32 array) broadcast to `shape` by numpy's rules
// (trailing dimensions aligned, size-1 and missing dimensions repeated) as a
// strided view with zero strides; nothing is copied.
IndexSource index_source(const py::array& indexes, const std::vector<int64_t>& shape, const Tables& tables) {
  if (indexes.dtype().kind() != 'i' || indexes.itemsize() != 4) throw py::type_error("indexes must be an int32 array");
  const size_t nd = shape.size(), ni = static_cast<size_t>(indexes.ndim());
  auto mismatch = [&] {
    std::string have, want;
    for (size_t d = 0; d < ni; ++d) have += std::to_string(indexes.shape(d)) + (d + 1 < ni ? ", " : "");
    for (size_t d = 0; d < nd; ++d) want += std::to_string(shape[d]) + (d + 1 < nd ? ", " : "");
    return py::value_error("indexes of shape (" + have + ") do not broadcast to shape (" + want + ")");
  };
  if (ni > nd) throw mismatch();
  std::vector<int64_t> strides(nd, 0);
  for (size_t k = 0; k < ni; ++k) {
    const size_t d = nd - ni + k;
    if (indexes.shape(k) == shape[d]) {
      if (indexes.strides(k) % 4 != 0) throw py::value_error("indexes must be aligned to int32");
      strides[d] = indexes.strides(k) / 4;
    } else if (indexes.shape(k) != 1) {
      throw mismatch();
    }
  }
  return IndexSource(static_cast<const int32_t*>(indexes.data()), shape, strides,
                     static_cast<uint32_t>(tables.size()));
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// float32 without forcecast: a float64 array must never be narrowed into it.
template <typename T>
using ScaleArray = py::array_t<T, std::is_same_v<T, float> ? py::array::c_style
                                                             : py::array::c_style | py::array::forcecast>;

template <typename T>
Int32Array scale_index_array(ScaleArray<T> scales, DoubleArray table) {
  if (table.ndim() != 1 || table.size() < 1) throw py::value_error("table scales must be a non-empty 1-D array");
  const double* ts = table.data();
  for (py::ssize_t i = 0; i < table.size(); ++i)
    if (!(ts[i] > 0.0 && ts[i] <= 1.7976931348623157e308) || (i > 0 && !(ts[i] > ts[i - 1])))
      throw py::value_error("table scales must be positive, finite and strictly increasing");
  Int32Array out(std::vector<py::ssize_t>(scales.shape(), scales.shape() + scales.ndim()));
  const T* s = scales.data();
  int32_t* o = out.mutable_data();
  const py::ssize_t count = scales.size();
  int32_t nan_seen = 0;
  {
    py::gil_scoped_release release;
    const ScaleIndexer index(ts, static_cast<int32_t>(table.size()));
    for (py::ssize_t i = 0; i < count; ++i) {
      o[i] = index(static_cast<double>(s[i]));
      nan_seen |= o[i];  // -1 (NaN) is the only negative result
    }
  }
  if (nan_seen < 0)
    for (py::ssize_t i = 0; i < count; ++i)
      if (o[i] < 0) throw py::value_error("scale " + std::to_string(i) + " is NaN");
  return out;
}

// Per-element parametric arguments, validated (ValueError naming the element).
void check_element_args(int family, const double* means, const double* scales, int64_t n, int precision) {
  if (family < 0 || family > 2) throw py::value_error("unknown family");
  if (precision < 2 || precision > kMaxPrecision) throw py::value_error("precision must be in [2, 16]");
  for (int64_t i = 0; i < n; ++i) {
    if (!(means[i] >= -kMaxElementMean && means[i] <= kMaxElementMean))
      throw py::value_error("mean of element " + std::to_string(i) + " must be finite and within +-2**30");
    if (!(scales[i] >= kMinElementScale && scales[i] <= kMaxElementScale))
      throw py::value_error("scale of element " + std::to_string(i) + " must be in [2**-20, 2**20]");
  }
}

// Per-element models over `n` elements from arrays the Python layer already
// broadcast to one shape (C-contiguous, equal sizes), validated here.
ElementModels element_models(int family, const DoubleArray& means, const DoubleArray& scales, int64_t n,
                             int precision) {
  if (means.size() != n || scales.size() != n) throw py::value_error("means and scales must have one entry per element");
  check_element_args(family, means.data(), scales.data(), n, precision);
  return {static_cast<Family>(family), precision, means.data(), scales.data(), nullptr, n};
}

// A fresh bytes object filled in place: no one else can see it yet.
py::bytes message_bytes(const Message& message) {
  PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(message.size()));
  if (!bytes) throw py::error_already_set();
  message.write(reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(bytes)));
  return py::reinterpret_steal<py::bytes>(bytes);
}

py::bytes as_bytes(const std::vector<uint8_t>& v) {
  return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}


// --- tables --------------------------------------------------------------------------

std::shared_ptr<Tables> tables_from_pmf(py::array_t<double, py::array::c_style | py::array::forcecast> pmf,
                                        const std::vector<int32_t>& offsets, const std::vector<uint32_t>& lengths,
                                        int precision) {
  if (pmf.ndim() != 2) throw py::value_error("pmf must be 2-D");
  const int64_t rows = pmf.shape(0), stride = pmf.shape(1);
  if (static_cast<int64_t>(offsets.size()) != rows || static_cast<int64_t>(lengths.size()) != rows)
    throw py::value_error("offsets and lengths must have one entry per pmf row");
  py::gil_scoped_release release;
  return Tables::from_pmf(pmf.data(), rows, stride, lengths, offsets, precision);
}

std::shared_ptr<Tables> tables_parametric(int family, py::array_t<double, py::array::c_style | py::array::forcecast> scales,
                                          int precision, double tail_mass) {
  if (family < 0 || family > 2) throw py::value_error("unknown family");
  py::gil_scoped_release release;
  return Tables::parametric(static_cast<Family>(family), scales.data(), scales.size(), precision, tail_mass);
}

std::shared_ptr<Tables> tables_from_freqs(int precision, const std::vector<int32_t>& offsets,
                                          const std::vector<uint32_t>& lengths, const std::vector<uint32_t>& freqs) {
  return std::make_shared<Tables>(precision, offsets, lengths, freqs);
}

std::shared_ptr<Tables> tables_deserialize(const py::bytes& blob) {
  const std::string_view view = blob;
  return Tables::deserialize(reinterpret_cast<const uint8_t*>(view.data()), view.size());
}

py::bytes tables_serialize(const Tables& t) { return as_bytes(t.serialize()); }
py::array tables_offsets(const Tables& t) { return py::array(py::cast(t.offsets())); }
py::array tables_lengths(const Tables& t) { return py::array(py::cast(t.lengths())); }
py::array tables_freqs(const Tables& t, size_t i) {
  if (i >= t.size()) throw py::index_error("row out of range");
  return py::array(py::cast(t.freqs(i)));
}
bool tables_equal(const Tables& a, const Tables& b) { return a == b; }

// --- per-element models ------------------------------------------------------------

double element_cutoff_checked(int family, int precision) {
  if (family < 0 || family > 2) throw py::value_error("unknown family");
  if (precision < 2 || precision > kMaxPrecision) throw py::value_error("precision must be in [2, 16]");
  return element_cutoff(static_cast<Family>(family), precision);
}

py::array_t<uint32_t> element_intervals_array(int family, const Int32Array& values, DoubleArray means,
                                              DoubleArray scales, int precision) {
  const int64_t n = values.size();
  if (means.size() != n || scales.size() != n) throw py::value_error("values, means and scales differ in size");
  check_element_args(family, means.data(), scales.data(), n, precision);
  py::array_t<uint32_t> out(std::vector<py::ssize_t>(values.shape(), values.shape() + values.ndim()));
  const int32_t* v = values.data();
  const double *mu = means.data(), *s = scales.data();
  uint32_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const Family f = static_cast<Family>(family);
    const double cutoff = element_cutoff(f, precision);
    for (int64_t i = 0; i < n; ++i) o[i] = element_interval(element_model(f, mu[i], s[i], precision, cutoff), v[i]);
  }
  return out;
}

py::tuple element_cdf_array(int family, double mean, double scale, int precision) {
  check_element_args(family, &mean, &scale, 1, precision);
  const Family f = static_cast<Family>(family);
  const ElementModel model = element_model(f, mean, scale, precision, element_cutoff(f, precision));
  py::array_t<int64_t> cdf(model.n + 2);
  int64_t* c = cdf.mutable_data();
  for (int64_t k = 0; k <= model.n; ++k) c[k] = model.cdf(model.k_min + k);
  c[model.n + 1] = model.total;
  return py::make_tuple(model.k_min, cdf);
}

// --- messages ------------------------------------------------------------------------

std::vector<int64_t> checked_shape(const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d < 0) throw py::value_error("shape must not have negative dimensions");
  return shape;
}

int positive_threads(int threads) { return std::max(1, threads); }

py::bytes encode_symbols(const Int32Array& symbols, const Tables& tables, const py::array& indexes,
                         int checksum_bytes, const py::bytes& context, int threads, int chunk_bits) {
  const IndexSource source = index_source(indexes, shape_of(symbols), tables);
  const EncodeOptions options{checksum_bytes, std::string(context), positive_threads(threads), chunk_bits};
  Message message;
  {
    py::gil_scoped_release release;
    message = encode(symbols.data(), source, tables, options);
  }
  return message_bytes(message);
}

Int32Array decode_symbols(const py::bytes& data, const Tables& tables, const py::array& indexes,
                          const std::vector<int64_t>& shape, int min_checksum_bytes, const py::bytes& context,
                          int threads) {
  const IndexSource source = index_source(indexes, checked_shape(shape), tables);
  Int32Array out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  const std::string_view view = data;  // bytes are immutable: safe without the GIL
  const DecodeOptions options{min_checksum_bytes, std::string(context), positive_threads(threads)};
  int32_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    decode(reinterpret_cast<const uint8_t*>(view.data()), view.size(), source, tables, options, dst);
  }
  return out;
}

py::bytes encode_elements(const Int32Array& symbols, int family, const DoubleArray& means, const DoubleArray& scales,
                          const std::optional<py::array_t<uint32_t, py::array::c_style>>& intervals, int precision,
                          int checksum_bytes, const py::bytes& context, int threads, int chunk_bits) {
  ElementModels models = element_models(family, means, scales, symbols.size(), precision);
  if (intervals) {
    // Anything else could divide by zero or overflow the coder's state.
    if (intervals->size() != symbols.size()) throw py::value_error("intervals must have one entry per element");
    const uint32_t* iv = intervals->data();
    for (int64_t i = 0; i < models.size; ++i) {
      const uint32_t start = iv[i] & 0xFFFF, freq = iv[i] >> 16;
      if (freq < 1 || start + freq > (uint32_t{1} << precision))
        throw py::value_error("interval of element " + std::to_string(i) +
                              " is not a nonempty interval of [0, 2**precision)");
    }
    models.intervals = iv;
  }
  const EncodeOptions options{checksum_bytes, std::string(context), positive_threads(threads), chunk_bits};
  Message message;
  {
    py::gil_scoped_release release;
    message = encode(symbols.data(), models, options);
  }
  return message_bytes(message);
}

Int32Array decode_elements(const py::bytes& data, int family, const DoubleArray& means, const DoubleArray& scales,
                           const std::vector<int64_t>& shape, int precision, int min_checksum_bytes,
                           const py::bytes& context, int threads) {
  checked_shape(shape);
  Int32Array out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  const ElementModels models = element_models(family, means, scales, out.size(), precision);
  const std::string_view view = data;
  const DecodeOptions options{min_checksum_bytes, std::string(context), positive_threads(threads)};
  int32_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    decode(reinterpret_cast<const uint8_t*>(view.data()), view.size(), models, options, dst);
  }
  return out;
}

double information_content_of(const Int32Array& symbols, const Tables& tables, const py::array& indexes) {
  const IndexSource source = index_source(indexes, shape_of(symbols), tables);
  py::gil_scoped_release release;
  return information_content(symbols.data(), source, tables);
}

std::string kernel_isa() { return chunk_kernels().isa; }

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "featcodec native core: rANS coder and quantized CDF tables";
  m.attr("FORMAT_VERSION") = kFormatVersion;
  m.attr("THREADS_PER_CORE") = kThreadsPerCore;
  m.def("kernel_isa", &kernel_isa, "The instruction set of the chunk coders in use (see FEATCODEC_ISA).");
  m.def("select_kernels", &select_kernels, py::arg("isa"),
        "Use the chunk coders built for `isa` ('generic', 'x86-64-v4'); False if unavailable.");
  py::register_exception<DecodeError>(m, "DecodeError", PyExc_ValueError);

  py::class_<Tables, std::shared_ptr<Tables>>(m, "Tables")
      .def_static("from_pmf", &tables_from_pmf, py::arg("pmf"), py::arg("offsets"), py::arg("lengths"),
                  py::arg("precision"))
      .def_static("parametric", &tables_parametric, py::arg("family"), py::arg("scales"), py::arg("precision"),
                  py::arg("tail_mass"))
      .def_static("from_freqs", &tables_from_freqs, py::arg("precision"), py::arg("offsets"), py::arg("lengths"),
                  py::arg("freqs"))
      .def_static("deserialize", &tables_deserialize, py::arg("blob"))
      .def("serialize", &tables_serialize)
      .def_property_readonly("precision", &Tables::precision)
      .def_property_readonly("offsets", &tables_offsets)
      .def_property_readonly("lengths", &tables_lengths)
      .def("freqs", &tables_freqs, py::arg("row"))
      .def("__len__", &Tables::size)
      .def("__eq__", &tables_equal);

  // float32 scales are indexed as they are (each converts to double exactly),
  // without a float64 copy of the array.
  m.def("scale_index", &scale_index_array<float>, py::arg("scales"), py::arg("table"));
  m.def("scale_index", &scale_index_array<double>, py::arg("scales"), py::arg("table"));
  m.def("element_cutoff", &element_cutoff_checked, py::arg("family"), py::arg("precision"));
  m.def("element_intervals", &element_intervals_array, py::arg("family"), py::arg("values"), py::arg("means"),
        py::arg("scales"), py::arg("precision"));
  m.def("element_cdf", &element_cdf_array, py::arg("family"), py::arg("mean"), py::arg("scale"),
        py::arg("precision"));

  m.def("encode", &encode_symbols, py::arg("symbols"), py::arg("tables"), py::arg("indexes"),
        py::arg("checksum_bytes"), py::arg("context"), py::arg("threads"), py::arg("chunk_bits"));
  m.def("decode", &decode_symbols, py::arg("data"), py::arg("tables"), py::arg("indexes"), py::arg("shape"),
        py::arg("min_checksum_bytes"), py::arg("context"), py::arg("threads"));
  m.def("encode_elements", &encode_elements, py::arg("symbols"), py::arg("family"), py::arg("means"),
        py::arg("scales"), py::arg("intervals"), py::arg("precision"), py::arg("checksum_bytes"),
        py::arg("context"), py::arg("threads"), py::arg("chunk_bits"));
  m.def("decode_elements", &decode_elements, py::arg("data"), py::arg("family"), py::arg("means"),
        py::arg("scales"), py::arg("shape"), py::arg("precision"), py::arg("min_checksum_bytes"),
        py::arg("context"), py::arg("threads"));
  m.def("information_content", &information_content_of, py::arg("symbols"), py::arg("tables"),
        py::arg("indexes"));
}
