// featcodec._cuda: the CUDA table kernels as seen from Python.  A separate
// extension from _core, linked against the static CUDA runtime, so that
// `import featcodec` never needs CUDA libraries; featcodec.cuda imports it
// lazily.  Device arrays come in through __cuda_array_interface__ (v3: its
// "stream" is waited on before use); host arrays are copied to the device.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "tables/table_math.h"
#include "cuda/kernels.h"

namespace py = pybind11;
using namespace featcodec;

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

// CAI stream numbers: 1 legacy default, 2 per-thread default, else a handle.
cudaStream_t as_stream(int64_t handle) {
  if (handle == 1) return cudaStreamLegacy;
  if (handle == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(handle));
}

// Device memory freed on `stream` when it goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

template <class T>
std::unique_ptr<DeviceBuffer> upload(const T* data, size_t count, cudaStream_t stream) {
  auto buffer = std::make_unique<DeviceBuffer>(count * sizeof(T), stream);
  if (count) check(cudaMemcpyAsync(buffer->as<void>(), data, count * sizeof(T), cudaMemcpyHostToDevice, stream), "upload");
  return buffer;
}

// An array argument on the device: the caller's memory (a device array) or
// a copy of a host array.  `typestr` is the numpy-style type, e.g. "<f8".
struct DeviceArray {
  const void* ptr = nullptr;
  std::vector<int64_t> shape;
  int64_t size = 1;
  std::string typestr;
  bool readonly = false;
  std::unique_ptr<DeviceBuffer> owned;
  py::object keep;  // the host copy, alive until the upload is done
  template <class T>
  const T* as_ptr() const { return static_cast<const T*>(ptr); }
};

int64_t product(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// `allowed`: the typestrs accepted for a device array; a host array is
// converted to the first.  Waits for the array's CAI stream on `stream`.
DeviceArray device_array(const py::object& obj, const char* what, const std::vector<std::string>& allowed,
                         cudaStream_t stream) {
  DeviceArray a;
  if (py::hasattr(obj, "__cuda_array_interface__")) {
    const py::dict cai = obj.attr("__cuda_array_interface__");
    for (auto d : cai["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
    a.size = product(a.shape);
    a.typestr = cai["typestr"].cast<std::string>();
    if (std::find(allowed.begin(), allowed.end(), a.typestr) == allowed.end())
      throw py::type_error(std::string(what) + ": unsupported device dtype " + a.typestr);
    const py::tuple data = cai["data"].cast<py::tuple>();
    a.ptr = reinterpret_cast<const void*>(static_cast<uintptr_t>(data[0].cast<uint64_t>()));
    a.readonly = data[1].cast<bool>();
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      const py::tuple strides = cai["strides"].cast<py::tuple>();
      int64_t expect = std::stoi(a.typestr.substr(2));
      for (size_t d = a.shape.size(); d-- > 0;) {
        if (a.shape[d] > 1 && strides[d].cast<int64_t>() != expect)
          throw py::value_error(std::string(what) + " must be a C-contiguous device array");
        expect *= a.shape[d];
      }
    }
    if (cai.contains("mask") && !cai["mask"].is_none()) throw py::value_error(std::string(what) + ": masked arrays are not supported");
    if (cai.contains("stream") && !cai["stream"].is_none()) {
      const cudaStream_t producer = as_stream(cai["stream"].cast<int64_t>());
      if (producer != stream) {
        cudaEvent_t event;
        check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
        check(cudaEventRecord(event, producer), "cudaEventRecord");
        check(cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent");
        cudaEventDestroy(event);
      }
    }
    return a;
  }
  const py::module_ np = py::module_::import("numpy");
  py::array host = np.attr("ascontiguousarray")(obj, py::arg("dtype") = allowed[0]);
  for (py::ssize_t d = 0; d < host.ndim(); ++d) a.shape.push_back(host.shape(d));
  a.size = host.size();
  a.typestr = allowed[0];
  a.owned = std::make_unique<DeviceBuffer>(host.nbytes(), stream);
  if (host.nbytes())
    check(cudaMemcpyAsync(a.owned->as<void>(), host.data(), host.nbytes(), cudaMemcpyHostToDevice, stream), "upload");
  a.ptr = a.owned->as<void>();
  a.keep = host;
  return a;
}

template <class T>
py::array_t<T> download(const T* ptr, const std::vector<int64_t>& shape, cudaStream_t stream) {
  py::array_t<T> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  if (out.size()) check(cudaMemcpyAsync(out.mutable_data(), ptr, out.nbytes(), cudaMemcpyDeviceToHost, stream), "download");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return out;
}

// The fixed-point log2 table on the current device, uploaded once.
const uint64_t* device_log2_table() {
  static std::mutex mutex;
  static std::map<int, uint64_t*> tables;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  uint64_t*& table = tables[device];
  if (!table) {
    std::vector<uint64_t> host(kLog2TableSize, 0);
    for (int64_t v = 1; v < kLog2TableSize; ++v) host[v] = fixed_log2(static_cast<uint64_t>(v));
    check(cudaMalloc(&table, host.size() * sizeof(uint64_t)), "cudaMalloc");
    check(cudaMemcpy(table, host.data(), host.size() * sizeof(uint64_t), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  return table;
}

// featcodec.Family's value (the enum of tables/detmath.h).
Family as_family(int code) {
  if (code < 0 || code > 2) throw py::value_error("unknown family code " + std::to_string(code));
  return static_cast<Family>(code);
}

// Quantizer scratch for `entries` table entries (kernels.h), freed on `stream`.
struct ScratchBuffers {
  DeviceBuffer pmf, weight, support_weight, trial, heaps;
  ScratchBuffers(int64_t entries, cudaStream_t stream)
      : pmf(entries * 8, stream), weight(entries * 8, stream), support_weight(entries * 8, stream),
        trial(entries * 4, stream), heaps(entries * 16, stream) {}
  RowScratch view() const {
    return {pmf.as<double>(), weight.as<uint64_t>(), support_weight.as<uint64_t>(), trial.as<uint32_t>(),
            heaps.as<int32_t>()};
  }
};

std::string availability() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
    cudaGetLastError();
    return "no CUDA device";
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device (") + cudaGetErrorString(err) + ")";
  }
  return "";
}

// Output: the caller's device array `out` (returned as is), or a host array.
struct Output {
  void* ptr;
  std::unique_ptr<DeviceBuffer> owned;
};
Output output(const py::object& out, const char* typestr, const std::vector<int64_t>& shape, size_t item,
              cudaStream_t stream) {
  if (out.is_none()) {
    auto buffer = std::make_unique<DeviceBuffer>(product(shape) * item, stream);
    void* p = buffer->as<void>();
    return {p, std::move(buffer)};
  }
  DeviceArray a = device_array(out, "out", {typestr}, stream);
  if (!py::hasattr(out, "__cuda_array_interface__")) throw py::type_error("out must be a device array");
  if (a.readonly) throw py::value_error("out is read-only");
  if (a.shape != shape) throw py::value_error("out has the wrong shape");
  return {const_cast<void*>(a.ptr), nullptr};
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "featcodec CUDA table kernels (bit-exact with featcodec._core)";
  m.def("availability", &availability, "'' when a CUDA device can be used, else why not.");
  m.def("device_name", [] {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return std::string(prop.name);
  });

  m.def(
      "scale_index",
      [](const py::object& scales, py::array_t<double, py::array::c_style | py::array::forcecast> table,
         const py::object& out, int64_t stream_handle) -> py::object {
        const cudaStream_t stream = as_stream(stream_handle);
        DeviceArray s = device_array(scales, "scales", {"<f8", "<f4"}, stream);
        auto t = upload(table.data(), table.size(), stream);
        Output o = output(out, "<i4", s.shape, 4, stream);
        cuda::launch_scale_index(s.ptr, s.typestr == "<f4", s.size, t->as<double>(), static_cast<int32_t>(table.size()),
                                 static_cast<int32_t*>(o.ptr), stream);
        check(cudaGetLastError(), "scale_index kernel");
        if (!out.is_none()) return out;
        return download(static_cast<int32_t*>(o.ptr), s.shape, stream);
      },
      py::arg("scales"), py::arg("table"), py::arg("out"), py::arg("stream"));

  m.def(
      "element_intervals",
      [](int family, const py::object& values, const py::object& means, const py::object& scales, int precision,
         const py::object& out, int64_t stream_handle) -> py::object {
        const cudaStream_t stream = as_stream(stream_handle);
        DeviceArray v = device_array(values, "values", {"<i4"}, stream);
        DeviceArray mu = device_array(means, "means", {"<f8", "<f4"}, stream);
        DeviceArray s = device_array(scales, "scales", {mu.typestr}, stream);
        if (mu.shape != v.shape || s.shape != v.shape)
          throw py::value_error("values, means and scales must have the same shape on the device");
        Output o = output(out, "<u4", v.shape, 4, stream);
        const Family f = as_family(family);
        const double cutoff = element_cutoff(f, precision);
        cuda::launch_element_intervals(f, static_cast<const int32_t*>(v.ptr), mu.ptr, s.ptr, mu.typestr == "<f4",
                                       v.size, precision, cutoff, static_cast<uint32_t*>(o.ptr), stream);
        check(cudaGetLastError(), "element_intervals kernel");
        if (!out.is_none()) return out;
        return download(static_cast<uint32_t*>(o.ptr), v.shape, stream);
      },
      py::arg("family"), py::arg("values"), py::arg("means"), py::arg("scales"), py::arg("precision"),
      py::arg("out"), py::arg("stream"));

  // Zero-mean family tables: (offsets, lengths, freqs) on the host.
  m.def(
      "parametric_tables",
      [](int family, const py::object& scales, int precision, double tail_mass, int64_t stream_handle) {
        const Family fam = as_family(family);
        const cudaStream_t stream = as_stream(stream_handle);
        DeviceArray s = device_array(scales, "scales", {"<f8"}, stream);
        const int64_t n = s.size;
        // A family has few scales: check them on the host (ValueError).
        py::array_t<double> host_scales = download(s.as_ptr<double>(), {n}, stream);
        for (int64_t i = 0; i < n; ++i)
          if (!(host_scales.at(i) > 0.0 && host_scales.at(i) <= 1.7976931348623157e308))
            throw py::value_error("scale " + std::to_string(i) + " must be positive and finite");
        DeviceBuffer h(n * sizeof(int64_t), stream);
        cuda::launch_half_widths(fam, s.as_ptr<double>(), n, precision, tail_mass, h.as<int64_t>(), stream);
        check(cudaGetLastError(), "half-width kernel");
        py::array_t<int64_t> half = download(h.as<int64_t>(), {n}, stream);
        std::vector<int64_t> begin(n + 1, 0);
        for (int64_t i = 0; i < n; ++i) begin[i + 1] = begin[i] + 2 * half.at(i) + 2;
        const int64_t entries = begin[n];
        auto d_begin = upload(begin.data(), begin.size(), stream);
        ScratchBuffers scratch(entries, stream);
        DeviceBuffer freqs(entries * 4, stream), status(n * sizeof(int), stream);
        cuda::launch_parametric_rows(fam, s.as_ptr<double>(), h.as<int64_t>(), d_begin->as<int64_t>(), n, precision,
                                     device_log2_table(), scratch.view(), freqs.as<uint32_t>(), status.as<int>(),
                                     stream);
        check(cudaGetLastError(), "parametric rows kernel");
        py::array_t<int> st = download(status.as<int>(), {n}, stream);
        for (int64_t i = 0; i < n; ++i)
          if (st.at(i) != kQuantizeOk) throw std::runtime_error("parametric row " + std::to_string(i) + " failed");
        py::array_t<uint32_t> f = download(freqs.as<uint32_t>(), {entries}, stream);
        py::array_t<int32_t> offsets(n);
        py::array_t<uint32_t> lengths(n);
        for (int64_t i = 0; i < n; ++i) {
          offsets.mutable_at(i) = static_cast<int32_t>(-half.at(i));
          lengths.mutable_at(i) = static_cast<uint32_t>(2 * half.at(i) + 1);
        }
        return py::make_tuple(offsets, lengths, f);
      },
      py::arg("family"), py::arg("scales"), py::arg("precision"), py::arg("tail_mass"), py::arg("stream"));

  // pmf rows: (first, count, freqs) on the host, freqs row after row
  // (count[i] + 1 each); ValueError naming the first bad row.
  m.def(
      "pmf_tables",
      [](const py::object& pmf, py::array_t<uint32_t, py::array::c_style | py::array::forcecast> lengths,
         int precision, bool optimal_support, int64_t stream_handle) {
        const cudaStream_t stream = as_stream(stream_handle);
        DeviceArray p = device_array(pmf, "pmf", {"<f8"}, stream);
        if (p.shape.size() != 2) throw py::value_error("pmf must be 2-D");
        const int64_t n = p.shape[0], stride = p.shape[1];
        if (lengths.size() != n) throw py::value_error("lengths must have one entry per row");
        std::vector<int64_t> begin(n + 1, 0);
        for (int64_t i = 0; i < n; ++i) {
          const uint32_t len = lengths.at(i);
          if (len < 1 || len > stride || (!optimal_support && uint64_t{len} + 1 > (uint64_t{1} << precision)))
            throw py::value_error("row " + std::to_string(i) + ": bad length " + std::to_string(len));
          begin[i + 1] = begin[i] + len + 1;
        }
        const int64_t entries = begin[n];
        auto d_begin = upload(begin.data(), begin.size(), stream);
        auto d_lengths = upload(lengths.data(), n, stream);
        ScratchBuffers scratch(entries, stream);
        DeviceBuffer freqs(entries * 4, stream), first(n * sizeof(int64_t), stream), count(n * sizeof(int64_t), stream),
            status(n * sizeof(int), stream), bad(n * sizeof(int64_t), stream);
        cuda::launch_pmf_rows(p.as_ptr<double>(), n, stride, d_lengths->as<uint32_t>(), d_begin->as<int64_t>(),
                              precision, optimal_support, device_log2_table(), scratch.view(), freqs.as<uint32_t>(),
                              first.as<int64_t>(), count.as<int64_t>(), status.as<int>(), bad.as<int64_t>(), stream);
        check(cudaGetLastError(), "pmf rows kernel");
        py::array_t<int> st = download(status.as<int>(), {n}, stream);
        for (int64_t i = 0; i < n; ++i) {
          const std::string row = "row " + std::to_string(i);
          switch (st.at(i)) {
            case kQuantizeOk: break;
            case kRowNotFinite: throw py::value_error(row + ": pmf has a NaN or infinite value");
            case kRowNegative: throw py::value_error(row + ": pmf has a negative value");
            case kQuantizeAllZero: throw py::value_error(row + ": pmf is all zero");
            default: throw std::runtime_error(row + ": quantization failed");
          }
        }
        py::array_t<int64_t> first_host = download(first.as<int64_t>(), {n}, stream);
        py::array_t<int64_t> count_host = download(count.as<int64_t>(), {n}, stream);
        py::array_t<uint32_t> spread = download(freqs.as<uint32_t>(), {entries}, stream);
        std::vector<uint32_t> packed;
        for (int64_t i = 0; i < n; ++i)
          packed.insert(packed.end(), spread.data() + begin[i], spread.data() + begin[i] + count_host.at(i) + 1);
        return py::make_tuple(first_host, count_host, py::array(py::cast(packed)));
      },
      py::arg("pmf"), py::arg("lengths"), py::arg("precision"), py::arg("optimal_support"), py::arg("stream"));
}
