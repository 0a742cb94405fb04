// rigctl-probe: moves data between the host and every GPU, and between every ordered pair
// of GPUs, checks that it arrives intact, and measures bandwidth and latency.
//
// Part of rigctl. CUDA runtime API only (no other libraries); builds with nvcc 11.8 and
// later (C++14), with the CUDA runtime linked statically (nvcc's default, also asked for
// explicitly by rigctl.core.probe.build_command), so the binary only needs the driver.
//
// Output contract (parsed by rigctl/core/probe.py, which documents every field):
//   stdout  JSON Lines, one object per line, each with a "type": "probe" (header, always
//           first), "device", "host_transfer", "pair", "error", and "summary" (always last,
//           unless the process was killed). Lines are flushed one by one.
//   stderr  human progress and error messages only.
//
// Measurements:
//   - bandwidth: each of --iterations repetitions times ONE copy of --size-mib MiB with CUDA
//     events; "gbps" is the MEDIAN of the repetitions, "gbps_max" the best one.
//     GB/s = 1e9 bytes per second.
//   - latency: each repetition times a batch of 100 back-to-back 4-byte copies;
//     "latency_us" is the MEDIAN over the repetitions of (batch time / 100).
//   - data checks: the source is filled with a pseudo-random 32-bit pattern unique to the
//     device or pair, the destination is first filled with other bytes; the result is
//     read back to the host and compared word by word, once after a first copy and again
//     after the timed copies. "mismatches" counts the differing 32-bit words of both checks.
//
// Exit codes:
//   0  every device, host transfer and pair check passed
//   1  some device, host transfer or pair check failed (data mismatch or CUDA error)
//   2  usage error (bad option; nothing was tested)
//   3  no usable GPU or driver (CUDA could not be initialized, or no device could be used)

#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

const int kFormat = 1;
const int kExitOk = 0;
const int kExitCheckFailed = 1;
const int kExitUsage = 2;
const int kExitNoGpu = 3;

const size_t kMiB = 1024 * 1024;
const size_t kKernelCheckBytes = kMiB;
const size_t kLatencyBytes = 4;
const int kLatencyCopies = 100;
const unsigned char kPoisonByte = 0x5a;

// --- JSON output -------------------------------------------------------------------------

std::string json_escape(const std::string& in) {
  std::string out;
  out.reserve(in.size() + 2);
  out += '"';
  for (size_t i = 0; i < in.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c >= 0x80) {
      out += '?';  // device names are ASCII; never emit invalid UTF-8
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

class JsonObject {
 public:
  JsonObject& str(const char* key, const std::string& value) { return raw(key, json_escape(value)); }
  JsonObject& integer(const char* key, long long value) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", value);
    return raw(key, buf);
  }
  JsonObject& uinteger(const char* key, unsigned long long value) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", value);
    return raw(key, buf);
  }
  JsonObject& real(const char* key, double value, int decimals) {
    if (!(value == value) || value > 1e300 || value < -1e300) return null(key);  // NaN, inf
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*f", decimals, value);
    return raw(key, buf);
  }
  JsonObject& boolean(const char* key, bool value) { return raw(key, value ? "true" : "false"); }
  JsonObject& null(const char* key) { return raw(key, "null"); }
  JsonObject& raw(const char* key, const std::string& json) {
    body_ += first_ ? "" : ",";
    first_ = false;
    body_ += json_escape(key);
    body_ += ':';
    body_ += json;
    return *this;
  }
  std::string text() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
  bool first_ = true;
};

void emit(const JsonObject& obj) {
  std::string line = obj.text();
  fprintf(stdout, "%s\n", line.c_str());
  fflush(stdout);
}

// --- CUDA error bookkeeping --------------------------------------------------------------

struct Failure {
  bool failed = false;
  std::string call;
  cudaError_t code = cudaSuccess;
  std::string note;  // used when the failure is not a CUDA error

  std::string json() const {
    JsonObject o;
    o.str("call", call);
    if (code != cudaSuccess) {
      o.str("cuda_error", cudaGetErrorName(code));
      o.integer("code", static_cast<long long>(code));
      o.str("message", cudaGetErrorString(code));
    } else {
      o.null("cuda_error");
      o.null("code");
      o.str("message", note);
    }
    return o.text();
  }
};

// Records the first failure of a sequence of CUDA calls; returns true on success.
bool check(cudaError_t err, const char* call, Failure* f) {
  if (err == cudaSuccess) return true;
  cudaGetLastError();  // clear a non-sticky error so later, unrelated calls can proceed
  if (!f->failed) {
    f->failed = true;
    f->call = call;
    f->code = err;
  }
  fprintf(stderr, "rigctl-probe: %s failed: %s (%s)\n", call, cudaGetErrorName(err), cudaGetErrorString(err));
  return false;
}

void fail_note(Failure* f, const char* call, const std::string& note) {
  if (!f->failed) {
    f->failed = true;
    f->call = call;
    f->code = cudaSuccess;
    f->note = note;
  }
}

// --- data pattern ------------------------------------------------------------------------

__host__ __device__ inline uint32_t pattern_word(uint64_t index, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(index) * 0x9e3779b1u ^ seed;
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  x ^= x >> 16;
  return x ^ static_cast<uint32_t>(index >> 32);
}

__global__ void fill_pattern_kernel(uint32_t* out, size_t words, uint32_t seed) {
  size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += stride) {
    out[i] = pattern_word(i, seed);
  }
}

void fill_host(uint32_t* out, size_t words, uint32_t seed) {
  for (size_t i = 0; i < words; ++i) out[i] = pattern_word(i, seed);
}

// Number of 32-bit words that differ from the pattern; *first gets the first bad byte offset.
unsigned long long count_mismatches(const uint32_t* got, size_t words, uint32_t seed, long long* first) {
  unsigned long long bad = 0;
  for (size_t i = 0; i < words; ++i) {
    if (got[i] != pattern_word(i, seed)) {
      if (bad == 0 && *first < 0) *first = static_cast<long long>(i * sizeof(uint32_t));
      ++bad;
    }
  }
  return bad;
}

uint32_t device_seed(int d) { return 0x52494700u + static_cast<uint32_t>(d) * 0x01000193u; }

uint32_t pair_seed(int src, int dst) {
  return 0x50325000u ^ (static_cast<uint32_t>(src + 1) * 0x9e3779b9u) ^ (static_cast<uint32_t>(dst + 1) * 0x7feb352du);
}

// --- statistics --------------------------------------------------------------------------

double median(std::vector<double> v) {
  if (v.empty()) return -1.0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

double maximum(const std::vector<double>& v) {
  if (v.empty()) return -1.0;
  return *std::max_element(v.begin(), v.end());
}

double gbps(size_t bytes, float ms) { return ms > 0 ? static_cast<double>(bytes) / (ms * 1e6) : -1.0; }

// --- options -----------------------------------------------------------------------------

struct Options {
  size_t size_mib = 64;
  int iterations = 10;
  bool no_p2p = false;
  bool pairs_given = false;
  std::vector<std::pair<int, int> > pairs;
};

void print_usage(FILE* out) {
  fprintf(out,
          "usage: rigctl-probe [--size-mib N] [--iterations N] [--no-p2p] [--pairs I:J,...] [--help]\n"
          "\n"
          "Copies data host<->GPU and between every ordered pair of GPUs, checks that it arrives\n"
          "intact and measures bandwidth and latency. Results go to stdout as JSON Lines\n"
          "(format %d, one object per line with a \"type\": probe, device, host_transfer, pair,\n"
          "error, summary); messages go to stderr.\n"
          "\n"
          "options:\n"
          "  --size-mib N     buffer size for bandwidth and data checks, MiB (default 64, 1..65536)\n"
          "  --iterations N   timed repetitions per measurement (default 10, 1..10000);\n"
          "                   bandwidth and latency report the median (bandwidth also the best)\n"
          "  --no-p2p         do not enable peer access: GPU-to-GPU copies are staged by the driver\n"
          "  --pairs I:J,...  test only these ordered pairs of device indexes (PCI bus order, like\n"
          "                   nvidia-smi, unless CUDA_DEVICE_ORDER is set)\n"
          "  --help           show this help and exit\n"
          "\n"
          "exit codes: 0 all checks passed, 1 a device/host/pair check failed, 2 usage error,\n"
          "            3 no usable GPU or driver\n",
          kFormat);
}

bool parse_count(const char* text, unsigned long long lo, unsigned long long hi, unsigned long long* out) {
  if (text == NULL || *text == '\0' || *text == '-' || *text == '+') return false;
  char* end = NULL;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == NULL || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_pairs(const std::string& text, std::vector<std::pair<int, int> >* out) {
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t colon = item.find(':');
    if (colon == std::string::npos) return false;
    unsigned long long a = 0, b = 0;
    if (!parse_count(item.substr(0, colon).c_str(), 0, 4095, &a)) return false;
    if (!parse_count(item.substr(colon + 1).c_str(), 0, 4095, &b)) return false;
    if (a == b) return false;
    std::pair<int, int> p(static_cast<int>(a), static_cast<int>(b));
    if (std::find(out->begin(), out->end(), p) == out->end()) out->push_back(p);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return !out->empty();
}

// Returns -1 to go on, or an exit code.
int parse_args(int argc, char** argv, Options* opt) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    size_t eq = arg.find('=');
    if (arg.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    bool takes_value = arg == "--size-mib" || arg == "--iterations" || arg == "--pairs";
    if (takes_value && !has_inline) {
      if (i + 1 >= argc) {
        fprintf(stderr, "rigctl-probe: error: %s needs a value\n", arg.c_str());
        return kExitUsage;
      }
      value = argv[++i];
    } else if (!takes_value && has_inline) {
      fprintf(stderr, "rigctl-probe: error: %s takes no value\n", arg.c_str());
      return kExitUsage;
    }
    unsigned long long n = 0;
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout);
      return kExitOk;
    } else if (arg == "--size-mib") {
      if (!parse_count(value.c_str(), 1, 65536, &n)) {
        fprintf(stderr, "rigctl-probe: error: --size-mib wants a whole number 1..65536, got '%s'\n",
                value.c_str());
        return kExitUsage;
      }
      opt->size_mib = static_cast<size_t>(n);
    } else if (arg == "--iterations") {
      if (!parse_count(value.c_str(), 1, 10000, &n)) {
        fprintf(stderr, "rigctl-probe: error: --iterations wants a whole number 1..10000, got '%s'\n",
                value.c_str());
        return kExitUsage;
      }
      opt->iterations = static_cast<int>(n);
    } else if (arg == "--no-p2p") {
      opt->no_p2p = true;
    } else if (arg == "--pairs") {
      opt->pairs.clear();
      if (!parse_pairs(value, &opt->pairs)) {
        fprintf(stderr,
                "rigctl-probe: error: --pairs wants ordered pairs of different device indexes like "
                "0:1,1:0, got '%s'\n",
                value.c_str());
        return kExitUsage;
      }
      opt->pairs_given = true;
    } else {
      fprintf(stderr, "rigctl-probe: error: unknown option '%s' (see --help)\n", argv[i]);
      return kExitUsage;
    }
  }
  return -1;
}

// --- devices -----------------------------------------------------------------------------

struct Device {
  int index = 0;
  bool usable = false;   // context, stream, events and buffers ready
  bool kernel_ok = false;
  std::string name;
  std::string bus_id;
  std::string uuid;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
  unsigned long long total_memory = 0;
  void* src = NULL;
  void* dst = NULL;
  cudaStream_t stream = NULL;
  cudaEvent_t start = NULL;
  cudaEvent_t stop = NULL;
  Failure failure;
};

struct HostBuffers {
  uint32_t* pattern = NULL;  // pinned
  uint32_t* readback = NULL;  // pinned
};

std::string format_uuid(const cudaUUID_t& u) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(u.bytes);
  char buf[64];
  snprintf(buf, sizeof(buf), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return buf;
}

void describe_device(Device* d) {
  Failure* f = &d->failure;
  cudaDeviceProp prop;
  memset(&prop, 0, sizeof(prop));
  if (check(cudaGetDeviceProperties(&prop, d->index), "cudaGetDeviceProperties", f)) {
    prop.name[sizeof(prop.name) - 1] = '\0';
    d->name = prop.name;
    d->total_memory = static_cast<unsigned long long>(prop.totalGlobalMem);
    d->uuid = format_uuid(prop.uuid);
  }
  check(cudaDeviceGetAttribute(&d->major, cudaDevAttrComputeCapabilityMajor, d->index),
        "cudaDeviceGetAttribute(ComputeCapabilityMajor)", f);
  check(cudaDeviceGetAttribute(&d->minor, cudaDevAttrComputeCapabilityMinor, d->index),
        "cudaDeviceGetAttribute(ComputeCapabilityMinor)", f);
  check(cudaDeviceGetAttribute(&d->multiprocessors, cudaDevAttrMultiProcessorCount, d->index),
        "cudaDeviceGetAttribute(MultiProcessorCount)", f);
  char bus[64] = {0};
  if (check(cudaDeviceGetPCIBusId(bus, sizeof(bus), d->index), "cudaDeviceGetPCIBusId", f)) {
    for (char* p = bus; *p; ++p) *p = static_cast<char>(tolower(static_cast<unsigned char>(*p)));
    d->bus_id = bus;
  }
}

// Context, stream, events, device buffers; then a kernel writes a pattern that the host checks
// (this fails with cudaErrorNoKernelImageForDevice when the binary lacks code for the GPU).
void setup_device(Device* d, size_t bytes, HostBuffers* host, Failure* host_failure) {
  Failure* f = &d->failure;
  if (f->failed) return;
  if (!check(cudaSetDevice(d->index), "cudaSetDevice", f)) return;
  if (!check(cudaFree(0), "cudaFree(0) (context creation)", f)) return;
  if (!check(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", f)) return;
  if (!check(cudaEventCreate(&d->start), "cudaEventCreate", f)) return;
  if (!check(cudaEventCreate(&d->stop), "cudaEventCreate", f)) return;
  if (!check(cudaMalloc(&d->src, bytes), "cudaMalloc(src)", f)) return;
  if (!check(cudaMalloc(&d->dst, bytes), "cudaMalloc(dst)", f)) return;
  if (host->pattern == NULL && !host_failure->failed) {
    // Pinned host memory needs a context: allocate it with the first device that has one.
    // cudaMallocHost memory is portable to every device (unified addressing).
    if (!check(cudaMallocHost(reinterpret_cast<void**>(&host->pattern), bytes), "cudaMallocHost(pattern)",
               host_failure) ||
        !check(cudaMallocHost(reinterpret_cast<void**>(&host->readback), bytes), "cudaMallocHost(readback)",
               host_failure)) {
      if (host->pattern) cudaFreeHost(host->pattern);
      host->pattern = NULL;
      host->readback = NULL;
    }
  }
  if (host->pattern == NULL) {
    fail_note(f, "cudaMallocHost", "no pinned host memory (see the host error line)");
    return;
  }
  d->usable = true;

  size_t words = kKernelCheckBytes / sizeof(uint32_t);
  uint32_t seed = device_seed(d->index) ^ 0x4b4b4b4bu;
  if (!check(cudaMemsetAsync(d->dst, kPoisonByte, kKernelCheckBytes, d->stream), "cudaMemsetAsync", f)) return;
  fill_pattern_kernel<<<64, 256, 0, d->stream>>>(static_cast<uint32_t*>(d->dst), words, seed);
  if (!check(cudaGetLastError(), "fill_pattern_kernel launch", f)) return;
  if (!check(cudaMemcpyAsync(host->readback, d->dst, kKernelCheckBytes, cudaMemcpyDeviceToHost, d->stream),
             "cudaMemcpyAsync(DeviceToHost)", f))
    return;
  if (!check(cudaStreamSynchronize(d->stream), "cudaStreamSynchronize", f)) return;
  long long first = -1;
  unsigned long long bad = count_mismatches(host->readback, words, seed, &first);
  if (bad != 0) {
    char note[128];
    snprintf(note, sizeof(note), "kernel-written pattern read back with %llu wrong words", bad);
    fail_note(f, "fill_pattern_kernel", note);
    return;
  }
  d->kernel_ok = true;
}

void emit_device(const Device& d) {
  JsonObject o;
  o.str("type", "device").integer("index", d.index);
  d.name.empty() ? o.null("name") : o.str("name", d.name);
  d.bus_id.empty() ? o.null("pci_bus_id") : o.str("pci_bus_id", d.bus_id);
  d.uuid.empty() ? o.null("uuid") : o.str("uuid", d.uuid);
  if (d.major > 0) {
    char cc[16];
    snprintf(cc, sizeof(cc), "%d.%d", d.major, d.minor);
    o.str("compute_capability", cc);
  } else {
    o.null("compute_capability");
  }
  o.uinteger("total_memory_bytes", d.total_memory).integer("multiprocessors", d.multiprocessors);
  o.boolean("usable", d.usable).boolean("kernel_ok", d.kernel_ok);
  o.boolean("ok", d.usable && d.kernel_ok && !d.failure.failed);
  if (d.failure.failed) {
    o.raw("error", d.failure.json());
  } else {
    o.null("error");
  }
  emit(o);
}

// Times `count` calls of op on the device's stream; returns milliseconds or a negative value.
template <typename Op>
float time_on_stream(Device* d, int count, Op op, const char* what, Failure* f) {
  if (!check(cudaEventRecord(d->start, d->stream), "cudaEventRecord", f)) return -1.0f;
  for (int k = 0; k < count; ++k) {
    if (!check(op(), what, f)) return -1.0f;
  }
  if (!check(cudaEventRecord(d->stop, d->stream), "cudaEventRecord", f)) return -1.0f;
  if (!check(cudaEventSynchronize(d->stop), "cudaEventSynchronize", f)) return -1.0f;
  float ms = 0.0f;
  if (!check(cudaEventElapsedTime(&ms, d->start, d->stop), "cudaEventElapsedTime", f)) return -1.0f;
  return ms;
}

// --- host <-> device ---------------------------------------------------------------------

bool host_transfer(Device* d, size_t bytes, int iterations, HostBuffers* host, int* exit_code) {
  Failure f;
  size_t words = bytes / sizeof(uint32_t);
  uint32_t seed = device_seed(d->index);
  std::vector<double> h2d, d2h;
  unsigned long long bad = 0;
  long long first = -1;
  bool data_checked = false;

  do {
    if (!d->usable) {
      fail_note(&f, "setup", "device not usable (see its device line)");
      break;
    }
    if (!check(cudaSetDevice(d->index), "cudaSetDevice", &f)) break;
    fill_host(host->pattern, words, seed);
    memset(host->readback, 0, bytes);
    // First round trip: also the warm-up.
    if (!check(cudaMemcpyAsync(d->src, host->pattern, bytes, cudaMemcpyHostToDevice, d->stream),
               "cudaMemcpyAsync(HostToDevice)", &f))
      break;
    if (!check(cudaMemcpyAsync(host->readback, d->src, bytes, cudaMemcpyDeviceToHost, d->stream),
               "cudaMemcpyAsync(DeviceToHost)", &f))
      break;
    if (!check(cudaStreamSynchronize(d->stream), "cudaStreamSynchronize", &f)) break;
    bad += count_mismatches(host->readback, words, seed, &first);
    memset(host->readback, 0, bytes);
    bool broke = false;
    for (int it = 0; it < iterations && !broke; ++it) {
      float ms = time_on_stream(
          d, 1, [&]() { return cudaMemcpyAsync(d->src, host->pattern, bytes, cudaMemcpyHostToDevice, d->stream); },
          "cudaMemcpyAsync(HostToDevice)", &f);
      if (ms < 0) broke = true;
      else h2d.push_back(gbps(bytes, ms));
    }
    for (int it = 0; it < iterations && !broke; ++it) {
      float ms = time_on_stream(
          d, 1, [&]() { return cudaMemcpyAsync(host->readback, d->src, bytes, cudaMemcpyDeviceToHost, d->stream); },
          "cudaMemcpyAsync(DeviceToHost)", &f);
      if (ms < 0) broke = true;
      else d2h.push_back(gbps(bytes, ms));
    }
    if (broke) break;
    bad += count_mismatches(host->readback, words, seed, &first);
    data_checked = true;
  } while (false);

  bool ok = !f.failed && data_checked && bad == 0;
  JsonObject o;
  o.str("type", "host_transfer").integer("device", d->index);
  d->bus_id.empty() ? o.null("pci_bus_id") : o.str("pci_bus_id", d->bus_id);
  o.uinteger("bytes", bytes).integer("iterations", iterations).boolean("pinned", true);
  h2d.empty() ? o.null("h2d_gbps") : o.real("h2d_gbps", median(h2d), 3);
  h2d.empty() ? o.null("h2d_gbps_max") : o.real("h2d_gbps_max", maximum(h2d), 3);
  d2h.empty() ? o.null("d2h_gbps") : o.real("d2h_gbps", median(d2h), 3);
  d2h.empty() ? o.null("d2h_gbps_max") : o.real("d2h_gbps_max", maximum(d2h), 3);
  o.boolean("data_ok", data_checked && bad == 0).uinteger("mismatches", bad);
  first < 0 ? o.null("first_mismatch_offset") : o.integer("first_mismatch_offset", first);
  o.boolean("ok", ok);
  f.failed ? o.raw("error", f.json()) : o.null("error");
  emit(o);
  if (!ok) {
    fprintf(stderr, "rigctl-probe: host transfer with device %d FAILED%s\n", d->index,
            bad ? " (data mismatch)" : "");
    *exit_code = kExitCheckFailed;
  }
  return ok;
}

// --- GPU -> GPU --------------------------------------------------------------------------

struct PairCounts {
  int tested = 0;
  int failed = 0;
  int data_failed = 0;
  int p2p = 0;
  int staged = 0;
};

// Enables peer access from `from` to `to`; *enabled_here tells whether this call did it.
bool enable_peer(int from, int to, bool* enabled_here, Failure* f) {
  *enabled_here = false;
  if (!check(cudaSetDevice(from), "cudaSetDevice", f)) return false;
  cudaError_t err = cudaDeviceEnablePeerAccess(to, 0);
  if (err == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return true;
  }
  if (!check(err, "cudaDeviceEnablePeerAccess", f)) return false;
  *enabled_here = true;
  return true;
}

void disable_peer(int from, int to) {
  if (cudaSetDevice(from) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  cudaError_t err = cudaDeviceDisablePeerAccess(to);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fprintf(stderr, "rigctl-probe: cudaDeviceDisablePeerAccess(%d -> %d): %s\n", from, to, cudaGetErrorName(err));
  }
}

// Reads dst's buffer back to the host and counts wrong words.
bool read_back_and_compare(Device* dst, size_t bytes, HostBuffers* host, uint32_t seed, unsigned long long* bad,
                           long long* first, Failure* f) {
  memset(host->readback, 0, bytes);
  if (!check(cudaSetDevice(dst->index), "cudaSetDevice", f)) return false;
  if (!check(cudaMemcpyAsync(host->readback, dst->dst, bytes, cudaMemcpyDeviceToHost, dst->stream),
             "cudaMemcpyAsync(DeviceToHost)", f))
    return false;
  if (!check(cudaStreamSynchronize(dst->stream), "cudaStreamSynchronize", f)) return false;
  *bad += count_mismatches(host->readback, bytes / sizeof(uint32_t), seed, first);
  return true;
}

void test_pair(Device* s, Device* t, const Options& opt, HostBuffers* host, PairCounts* counts, int* exit_code) {
  size_t bytes = opt.size_mib * kMiB;
  Failure f;
  Failure peer_failure;
  int can_access = -1;  // -1: unknown
  bool peer_enabled = false;
  bool enabled_st = false, enabled_ts = false;
  std::vector<double> bw, lat;
  unsigned long long bad = 0;
  long long first = -1;
  bool data_checked = false;
  uint32_t seed = pair_seed(s->index, t->index);

  do {
    if (!s->usable || !t->usable) {
      fail_note(&f, "setup", "device not usable (see its device line)");
      break;
    }
    if (!check(cudaDeviceCanAccessPeer(&can_access, s->index, t->index), "cudaDeviceCanAccessPeer", &f)) {
      can_access = -1;
      break;
    }
    if (can_access && !opt.no_p2p) {
      // Both directions, like applications do; only s -> t decides the mode of this copy.
      peer_enabled = enable_peer(s->index, t->index, &enabled_st, &peer_failure);
      int back = 0;
      if (peer_enabled && cudaDeviceCanAccessPeer(&back, t->index, s->index) == cudaSuccess && back) {
        Failure ignored;
        enable_peer(t->index, s->index, &enabled_ts, &ignored);
      }
      cudaGetLastError();
    }
    // Source gets the pattern, destination gets poison bytes.
    if (!check(cudaSetDevice(s->index), "cudaSetDevice", &f)) break;
    fill_host(host->pattern, bytes / sizeof(uint32_t), seed);
    if (!check(cudaMemcpyAsync(s->src, host->pattern, bytes, cudaMemcpyHostToDevice, s->stream),
               "cudaMemcpyAsync(HostToDevice)", &f))
      break;
    if (!check(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize", &f)) break;
    if (!check(cudaSetDevice(t->index), "cudaSetDevice", &f)) break;
    if (!check(cudaMemsetAsync(t->dst, kPoisonByte, bytes, t->stream), "cudaMemsetAsync", &f)) break;
    if (!check(cudaStreamSynchronize(t->stream), "cudaStreamSynchronize", &f)) break;

    // First copy (also the warm-up) and its check.
    if (!check(cudaSetDevice(s->index), "cudaSetDevice", &f)) break;
    if (!check(cudaMemcpyPeerAsync(t->dst, t->index, s->src, s->index, bytes, s->stream), "cudaMemcpyPeerAsync",
               &f))
      break;
    if (!check(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize", &f)) break;
    if (!read_back_and_compare(t, bytes, host, seed, &bad, &first, &f)) break;

    // Bandwidth: one large copy per repetition.
    if (!check(cudaSetDevice(s->index), "cudaSetDevice", &f)) break;
    bool broke = false;
    for (int it = 0; it < opt.iterations && !broke; ++it) {
      float ms = time_on_stream(
          s, 1, [&]() { return cudaMemcpyPeerAsync(t->dst, t->index, s->src, s->index, bytes, s->stream); },
          "cudaMemcpyPeerAsync", &f);
      if (ms < 0) broke = true;
      else bw.push_back(gbps(bytes, ms));
    }
    // Latency: batches of small copies (the first word; same value, the check stays valid).
    for (int it = 0; it < opt.iterations && !broke; ++it) {
      float ms = time_on_stream(
          s, kLatencyCopies,
          [&]() { return cudaMemcpyPeerAsync(t->dst, t->index, s->src, s->index, kLatencyBytes, s->stream); },
          "cudaMemcpyPeerAsync", &f);
      if (ms < 0) broke = true;
      else lat.push_back(ms * 1000.0 / kLatencyCopies);
    }
    if (broke) break;
    if (!read_back_and_compare(t, bytes, host, seed, &bad, &first, &f)) break;
    data_checked = true;
  } while (false);

  if (enabled_st) disable_peer(s->index, t->index);
  if (enabled_ts) disable_peer(t->index, s->index);

  bool data_ok = data_checked && bad == 0;
  bool ok = data_ok && !f.failed;
  counts->tested += 1;
  counts->failed += ok ? 0 : 1;
  counts->data_failed += bad ? 1 : 0;
  counts->p2p += peer_enabled ? 1 : 0;
  counts->staged += peer_enabled ? 0 : 1;
  if (!ok) *exit_code = kExitCheckFailed;

  JsonObject o;
  o.str("type", "pair").integer("src", s->index).integer("dst", t->index);
  s->bus_id.empty() ? o.null("src_pci_bus_id") : o.str("src_pci_bus_id", s->bus_id);
  t->bus_id.empty() ? o.null("dst_pci_bus_id") : o.str("dst_pci_bus_id", t->bus_id);
  can_access < 0 ? o.null("can_access_peer") : o.boolean("can_access_peer", can_access != 0);
  o.boolean("peer_access", peer_enabled).str("mode", peer_enabled ? "p2p" : "staged");
  peer_failure.failed ? o.raw("peer_access_error", peer_failure.json()) : o.null("peer_access_error");
  o.uinteger("bytes", bytes).integer("iterations", opt.iterations);
  bw.empty() ? o.null("gbps") : o.real("gbps", median(bw), 3);
  bw.empty() ? o.null("gbps_max") : o.real("gbps_max", maximum(bw), 3);
  o.uinteger("latency_bytes", kLatencyBytes);
  lat.empty() ? o.null("latency_us") : o.real("latency_us", median(lat), 3);
  o.boolean("data_ok", data_ok).uinteger("mismatches", bad);
  first < 0 ? o.null("first_mismatch_offset") : o.integer("first_mismatch_offset", first);
  o.boolean("ok", ok);
  f.failed ? o.raw("error", f.json()) : o.null("error");
  emit(o);

  fprintf(stderr, "rigctl-probe: %d -> %d %s: %s", s->index, t->index, peer_enabled ? "p2p" : "staged",
          ok ? "ok" : "FAILED");
  if (!bw.empty()) fprintf(stderr, ", %.2f GB/s", median(bw));
  if (!lat.empty()) fprintf(stderr, ", %.2f us", median(lat));
  if (bad) fprintf(stderr, ", %llu wrong words", bad);
  fprintf(stderr, "\n");
}

// --- top level ---------------------------------------------------------------------------

void emit_error(const char* stage, const Failure& f) {
  JsonObject o;
  o.str("type", "error").str("stage", stage);
  if (f.code != cudaSuccess) {
    o.str("call", f.call).str("cuda_error", cudaGetErrorName(f.code)).integer("code", f.code);
    o.str("message", cudaGetErrorString(f.code));
  } else {
    o.str("call", f.call).null("cuda_error").null("code").str("message", f.note);
  }
  emit(o);
}

void emit_summary(int exit_code, int device_count, int devices_failed, int host_failed, const PairCounts& c,
                  int errors) {
  JsonObject o;
  o.str("type", "summary").boolean("ok", exit_code == kExitOk).integer("exit_code", exit_code);
  o.integer("devices", device_count).integer("devices_failed", devices_failed);
  o.integer("host_transfers_failed", host_failed);
  o.integer("pairs", c.tested).integer("pairs_failed", c.failed).integer("pairs_data_failed", c.data_failed);
  o.integer("pairs_p2p", c.p2p).integer("pairs_staged", c.staged).integer("errors", errors);
  emit(o);
}

int run(const Options& opt) {
  int runtime_version = 0, driver_version = 0, count = 0;
  Failure init;
  // The version queries may already report the driver's initialization error (CUDA 11.x
  // answers cudaErrorNoDevice there); cudaGetDeviceCount below is the call that decides.
  if (cudaRuntimeGetVersion(&runtime_version) != cudaSuccess) runtime_version = CUDART_VERSION;
  if (cudaDriverGetVersion(&driver_version) != cudaSuccess) driver_version = 0;  // 0: no driver
  cudaGetLastError();
  if (check(cudaGetDeviceCount(&count), "cudaGetDeviceCount", &init) && count <= 0) {
    fail_note(&init, "cudaGetDeviceCount", "no CUDA devices");
  }
  if (init.failed) count = 0;

  size_t bytes = opt.size_mib * kMiB;
  JsonObject header;
  header.str("type", "probe").str("probe", "rigctl-probe").integer("format", kFormat);
  header.integer("cuda_runtime", runtime_version).integer("cuda_driver", driver_version);
  header.integer("device_count", count);
  const char* order = getenv("CUDA_DEVICE_ORDER");
  header.str("device_order", order ? order : "");
  JsonObject options;
  options.integer("size_mib", static_cast<long long>(opt.size_mib)).integer("iterations", opt.iterations);
  options.boolean("p2p", !opt.no_p2p).integer("latency_bytes", kLatencyBytes).integer("latency_copies", kLatencyCopies);
  header.raw("options", options.text());
  emit(header);

  PairCounts pc;
  if (init.failed) {
    emit_error("init", init);
    fprintf(stderr, "rigctl-probe: no usable GPU: %s: %s\n", init.call.c_str(),
            init.code != cudaSuccess ? cudaGetErrorString(init.code) : init.note.c_str());
    emit_summary(kExitNoGpu, 0, 0, 0, pc, 1);
    return kExitNoGpu;
  }

  std::vector<std::pair<int, int> > pairs;
  if (opt.pairs_given) {
    for (size_t k = 0; k < opt.pairs.size(); ++k) {
      if (opt.pairs[k].first >= count || opt.pairs[k].second >= count) {
        Failure usage;
        char note[160];
        snprintf(note, sizeof(note), "--pairs names device %d, but there are %d devices (0..%d)",
                 std::max(opt.pairs[k].first, opt.pairs[k].second), count, count - 1);
        fail_note(&usage, "--pairs", note);
        emit_error("usage", usage);
        fprintf(stderr, "rigctl-probe: error: %s\n", note);
        emit_summary(kExitUsage, count, 0, 0, pc, 1);
        return kExitUsage;
      }
    }
    pairs = opt.pairs;
  } else {
    for (int i = 0; i < count; ++i)
      for (int j = 0; j < count; ++j)
        if (i != j) pairs.push_back(std::make_pair(i, j));
  }

  fprintf(stderr, "rigctl-probe: %d device(s), %zu pair(s), %zu MiB, %d iteration(s)%s\n", count, pairs.size(),
          opt.size_mib, opt.iterations, opt.no_p2p ? ", peer access not enabled (--no-p2p)" : "");

  int exit_code = kExitOk;
  int errors = 0;
  std::vector<Device> devices(count);
  HostBuffers host;
  Failure host_failure;
  int usable = 0, devices_failed = 0;
  for (int i = 0; i < count; ++i) {
    Device* d = &devices[i];
    d->index = i;
    describe_device(d);
    setup_device(d, bytes, &host, &host_failure);
    emit_device(*d);
    if (d->usable) ++usable;
    if (!(d->usable && d->kernel_ok && !d->failure.failed)) {
      ++devices_failed;
      exit_code = kExitCheckFailed;
      fprintf(stderr, "rigctl-probe: device %d (%s) FAILED: %s\n", i, d->bus_id.c_str(), d->failure.call.c_str());
    }
  }
  if (host_failure.failed) {
    emit_error("host", host_failure);
    ++errors;
  }
  if (usable == 0) {
    Failure none;
    fail_note(&none, "setup", "no device could be used (see the device lines)");
    emit_error("init", none);
    emit_summary(kExitNoGpu, count, devices_failed, 0, pc, errors + 1);
    return kExitNoGpu;
  }

  int host_failed = 0;
  for (int i = 0; i < count; ++i) {
    if (!host_transfer(&devices[i], bytes, opt.iterations, &host, &exit_code)) ++host_failed;
  }
  for (size_t k = 0; k < pairs.size(); ++k) {
    test_pair(&devices[pairs[k].first], &devices[pairs[k].second], opt, &host, &pc, &exit_code);
  }

  for (int i = 0; i < count; ++i) {
    Device* d = &devices[i];
    if (cudaSetDevice(i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    if (d->src) cudaFree(d->src);
    if (d->dst) cudaFree(d->dst);
    if (d->start) cudaEventDestroy(d->start);
    if (d->stop) cudaEventDestroy(d->stop);
    if (d->stream) cudaStreamDestroy(d->stream);
  }
  if (host.pattern) cudaFreeHost(host.pattern);
  if (host.readback) cudaFreeHost(host.readback);
  cudaGetLastError();

  emit_summary(exit_code, count, devices_failed, host_failed, pc, errors);
  fprintf(stderr, "rigctl-probe: %s\n", exit_code == kExitOk ? "all checks passed" : "SOME CHECKS FAILED");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  int code = parse_args(argc, argv, &opt);
  if (code >= 0) return code;
  // Number devices in PCI bus order, as nvidia-smi does, unless the caller chose an order
  // (CUDA's default numbers the fastest GPU first). Must happen before the first CUDA call.
  setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 0);
  return run(opt);
}
