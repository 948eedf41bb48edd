#include "trainer/data/token_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/tokenized_example.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

std::string ErrnoText(int err) { return std::generic_category().message(err); }

// A temporary file in `folder` (mkstemp), removed when this goes out of scope.
class TempFile {
 public:
  TempFile(const std::string& folder, const std::string& tag) {
    path_ = (fs::path(folder) / (".build-" + tag + "-XXXXXX")).string();
    const int fd = ::mkostemp(path_.data(), O_CLOEXEC);
    CEMOE_CHECK(fd >= 0, "cannot create a temporary file in '{}': {}", folder, ErrnoText(errno));
    file_ = ::fdopen(fd, "w+b");
    if (file_ == nullptr) {
      ::close(fd);
      ::unlink(path_.c_str());
      CEMOE_FAIL("cannot open temporary file '{}': {}", path_, ErrnoText(errno));
    }
  }
  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void Write(const void* data, size_t size) {
    CEMOE_CHECK(std::fwrite(data, 1, size, file_) == size, "cannot write '{}': {}", path_,
                ErrnoText(errno));
  }
  // Hands the whole content to `sink` in chunks.
  void CopyTo(const ByteSink& sink) {
    CEMOE_CHECK(std::fflush(file_) == 0 && std::fseek(file_, 0, SEEK_SET) == 0,
                "cannot rewind '{}': {}", path_, ErrnoText(errno));
    std::vector<char> buf(size_t{4} << 20);
    while (true) {
      const size_t n = std::fread(buf.data(), 1, buf.size(), file_);
      if (n > 0) sink(buf.data(), n);
      if (n < buf.size()) {
        CEMOE_CHECK(!std::ferror(file_), "cannot read back '{}'", path_);
        return;
      }
    }
  }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

// Maps the file read-only and checks it; "" with `header` filled when sound.
std::string CheckExisting(const std::string& path, TokenCacheHeader* header) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fmt::format("cannot open: {}", ErrnoText(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return "cannot stat";
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return CheckTokenCacheBytes(nullptr, 0, header);
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return fmt::format("cannot map: {}", ErrnoText(errno));
  const std::string problem =
      CheckTokenCacheBytes(static_cast<const unsigned char*>(p), size, header);
  ::munmap(p, size);
  return problem;
}

std::string SafeStem(const std::string& data_path) {
  std::string stem = fs::path(data_path).stem().string();
  std::string out;
  for (char c : stem) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    out += ok ? c : '_';
    if (out.size() >= 40) break;
  }
  return out.empty() ? "data" : out;
}

}  // namespace

std::string ResolveTokenCacheDir(const std::string& cache_dir_setting) {
  std::string root = cache_dir_setting;
  if (root.empty()) {
    const char* env = std::getenv("CEMOE_CACHE_DIR");
    if (env != nullptr && *env != '\0') root = env;
  }
  if (root.empty()) {
    const char* home = std::getenv("HOME");
    CEMOE_CHECK(home != nullptr && *home != '\0',
                "no cache folder for tokenized data: set data.cache_dir or $CEMOE_CACHE_DIR "
                "($HOME is not set)");
    root = (fs::path(home) / ".cache" / "cemoe").string();
  }
  return (fs::path(root) / "tokens").string();
}

Hash128 TokenCacheKey(const TokenCacheKeyParts& p) {
  ContentHasher h;
  h.AddField("cemoe token cache");
  h.AddField(static_cast<int64_t>(kTokenCacheVersion));
  for (const Hash128& x : {p.data, p.tokenizer}) {
    h.AddField(static_cast<int64_t>(x.hi));
    h.AddField(static_cast<int64_t>(x.lo));
  }
  h.AddField(p.renderer_key);
  h.AddField(p.max_length);
  h.AddField(int64_t{p.train_on_prompt});
  h.AddField(int64_t{p.first_turn_only});
  h.AddField(int64_t{p.skip_bad_lines});
  h.AddField(p.fields.format);
  h.AddField(p.fields.messages_field);
  h.AddField(p.fields.prompt_field);
  h.AddField(p.fields.completion_field);
  h.AddField(p.fields.system_field);
  return h.Finish();
}

std::string TokenCacheFileName(const std::string& data_path, const Hash128& key) {
  return SafeStem(data_path) + "-" + key.Hex() + ".tokens";
}

TokenCacheResult EnsureTokenCache(const DataSource& source, size_t source_index,
                                  const DataSection& data, const Tokenizer& tokenizer,
                                  const ChatRenderer& renderer) {
  const auto start = std::chrono::steady_clock::now();
  const SourceFields fields = ResolveSourceFields(source, source_index);
  CEMOE_CHECK(data.bad_lines == "error" || data.bad_lines == "skip",
              "data.bad_lines (\"{}\") must be \"error\" or \"skip\"", Excerpt(data.bad_lines, 40));
  const bool skip = data.bad_lines == "skip";
  std::error_code ec;
  CEMOE_CHECK(fs::is_regular_file(fields.path, ec), "{}.path: cannot open '{}': {}",
              fields.recipe_field, fields.path,
              fs::exists(fields.path, ec) ? "not a regular file" : "no such file");

  TokenCacheKeyParts parts;
  parts.data = HashFile(fields.path, fields.recipe_field + ".path");
  parts.tokenizer = HashFile(tokenizer.source(), "tokenizer.json (part of the token cache key)");
  parts.renderer_key = renderer.CacheKey();
  parts.max_length = data.max_length;
  parts.train_on_prompt = data.train_on_prompt;
  parts.first_turn_only = data.first_turn_only;
  parts.skip_bad_lines = skip;
  parts.fields = fields;
  const Hash128 key = TokenCacheKey(parts);

  TokenCacheResult result;
  const std::string dir = ResolveTokenCacheDir(data.cache_dir);
  result.path = (fs::path(dir) / TokenCacheFileName(fields.path, key)).string();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  if (fs::exists(result.path, ec)) {
    TokenCacheHeader header;
    std::string problem = CheckExisting(result.path, &header);
    if (problem.empty() && header.key != key) problem = "its header carries another key";
    if (problem.empty()) {
      result.header = header;
      result.seconds = seconds();
      return result;
    }
    result.rebuild_why = problem;
  }

  fs::create_directories(dir, ec);
  CEMOE_CHECK(!ec, "cannot create the token cache folder '{}' (data.cache_dir): {}", dir,
              ec.message());
  TempFile tokens_file(dir, "tokens");
  TempFile mask_file(dir, "mask");
  std::vector<int64_t> offsets = {0};
  TokenCacheHeader header;
  header.key = key;
  header.max_length = data.max_length;
  TokenCacheCounts& c = header.counts;
  TokenizeOptions options;
  options.max_length = data.max_length;
  options.train_on_prompt = data.train_on_prompt;

  const JsonlReadStats stats = ReadJsonlConversations(
      fields, data.first_turn_only, skip,
      [&](const std::vector<ChatMessage>& messages, int64_t /*line*/) -> std::string {
        TokenizedExample ex;
        try {
          ex = TokenizeConversation(messages, renderer, tokenizer, options);
        } catch (const Error& e) {
          return fmt::format("cannot render or tokenize: {}", e.what());
        }
        if (ex.num_loss_tokens == 0) {
          ++c.dropped;
          return "";
        }
        tokens_file.Write(ex.tokens.data(), ex.tokens.size() * sizeof(int32_t));
        mask_file.Write(ex.loss_mask.data(), ex.loss_mask.size());
        const int64_t n = static_cast<int64_t>(ex.tokens.size());
        offsets.push_back(offsets.back() + n);
        ++c.examples;
        c.tokens += n;
        c.loss_tokens += ex.num_loss_tokens;
        c.truncated += ex.truncated ? 1 : 0;
        return "";
      });
  c.lines = stats.lines;
  c.skipped_lines = stats.skipped_lines;
  result.first_skip = stats.first_skip;

  WriteFileAtomically(result.path, [&](const ByteSink& sink) {
    const std::string head = EncodeTokenCacheHeader(header);
    sink(head.data(), head.size());
    sink(offsets.data(), offsets.size() * sizeof(int64_t));
    tokens_file.CopyTo(sink);
    mask_file.CopyTo(sink);
  });
  result.built = true;
  result.header = header;
  result.seconds = seconds();
  return result;
}

}  // namespace cemoe
