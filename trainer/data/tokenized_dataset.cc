#include "trainer/data/tokenized_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "model/check.h"

namespace cemoe {

struct TokenizedDataset::MappedFile {
  std::string path;
  void* base = nullptr;
  size_t size = 0;
  TokenCacheHeader header;
  const int64_t* offsets = nullptr;
  const int32_t* tokens = nullptr;
  const uint8_t* mask = nullptr;

  ~MappedFile() {
    if (base != nullptr) ::munmap(base, size);
  }
};

namespace {

std::string ErrnoText(int err) { return std::generic_category().message(err); }

}  // namespace

TokenizedDataset TokenizedDataset::Open(const std::vector<std::string>& paths) {
  TokenizedDataset ds;
  ds.first_example_.push_back(0);
  for (const std::string& path : paths) {
    auto f = std::make_shared<MappedFile>();
    f->path = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    CEMOE_CHECK(fd >= 0, "token cache '{}': cannot open: {}", path, ErrnoText(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      CEMOE_FAIL("token cache '{}': cannot stat: {}", path, ErrnoText(err));
    }
    f->size = static_cast<size_t>(st.st_size);
    if (f->size > 0) {
      void* p = ::mmap(nullptr, f->size, PROT_READ, MAP_SHARED, fd, 0);
      const int err = errno;
      ::close(fd);
      CEMOE_CHECK(p != MAP_FAILED, "token cache '{}': cannot map {} bytes: {}", path, f->size,
                  ErrnoText(err));
      f->base = p;
    } else {
      ::close(fd);
    }
    const auto* bytes = static_cast<const unsigned char*>(f->base);
    const std::string problem = CheckTokenCacheBytes(bytes, f->size, &f->header);
    CEMOE_CHECK(problem.empty(), "token cache '{}' is corrupt: {} (delete it to rebuild)", path,
                problem);
    TokenCacheLayout layout;
    TokenCacheLayoutOf(f->header.counts, &layout);
    f->offsets = reinterpret_cast<const int64_t*>(bytes + layout.offsets_at);
    f->tokens = reinterpret_cast<const int32_t*>(bytes + layout.tokens_at);
    f->mask = reinterpret_cast<const uint8_t*>(bytes + layout.mask_at);
    ds.first_example_.push_back(ds.first_example_.back() + f->header.counts.examples);
    ds.files_.push_back(std::move(f));
  }
  return ds;
}

int64_t TokenizedDataset::num_tokens() const {
  int64_t n = 0;
  for (const auto& f : files_) n += f->header.counts.tokens;
  return n;
}

ExampleView TokenizedDataset::example(int64_t i) const {
  CEMOE_CHECK(i >= 0 && i < size(), "example {} is outside the dataset's {} examples", i, size());
  // The file holding i: the last with first_example_[f] <= i.
  const size_t f =
      static_cast<size_t>(std::upper_bound(first_example_.begin(), first_example_.end(), i) -
                          first_example_.begin() - 1);
  const MappedFile& m = *files_[f];
  const int64_t local = i - first_example_[f];
  ExampleView v;
  v.tokens = m.tokens + m.offsets[local];
  v.loss_mask = m.mask + m.offsets[local];
  v.size = m.offsets[local + 1] - m.offsets[local];
  return v;
}

std::vector<int64_t> TokenizedDataset::Lengths() const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(size()));
  for (const auto& f : files_) {
    for (int64_t i = 0; i < f->header.counts.examples; ++i) {
      out.push_back(f->offsets[i + 1] - f->offsets[i]);
    }
  }
  return out;
}

const TokenCacheHeader& TokenizedDataset::header(size_t file) const {
  CEMOE_CHECK(file < files_.size(), "token cache file {} of {}", file, files_.size());
  return files_[file]->header;
}

const std::string& TokenizedDataset::path(size_t file) const {
  CEMOE_CHECK(file < files_.size(), "token cache file {} of {}", file, files_.size());
  return files_[file]->path;
}

}  // namespace cemoe
