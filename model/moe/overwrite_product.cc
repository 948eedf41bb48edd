// overwrite_product.cc: out = a @ b through oneDNN's row-major sgemm (overwrite_product.h).
#include "model/moe/overwrite_product.h"

#include <ATen/ATen.h>

#include <algorithm>

#if CEMOE_WITH_DNNL_SGEMM
#include <oneapi/dnnl/dnnl.h>
#endif

namespace cemoe {

bool HaveOverwriteProduct() { return CEMOE_WITH_DNNL_SGEMM != 0; }

#if CEMOE_WITH_DNNL_SGEMM
namespace {

// Row-major operand t [rows, cols] as oneDNN sees it: 'N' with leading dimension stride(0) when
// its rows are contiguous, 'T' with stride(1) when its columns are (t is then the transpose of a
// row-major [cols, rows] matrix). False when neither (or a degenerate stride oneDNN rejects).
bool Operand(const at::Tensor& t, char* trans, int64_t* ld) {
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, t.size(1))) {
    *trans = 'N';
    *ld = t.stride(0);
    return true;
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, t.size(0))) {
    *trans = 'T';
    *ld = t.stride(1);
    return true;
  }
  return false;
}

}  // namespace

bool OverwriteProduct(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  for (const at::Tensor* t : {static_cast<const at::Tensor*>(&out), &a, &b}) {
    if (!t->defined() || t->dim() != 2 || t->scalar_type() != at::kFloat || !t->device().is_cpu())
      return false;
  }
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  if (b.size(0) != k || out.size(0) != m || out.size(1) != n || m == 0 || n == 0 || k == 0)
    return false;
  char ta = 'N', tb = 'N';
  int64_t lda = 0, ldb = 0;
  if (!Operand(a, &ta, &lda) || !Operand(b, &tb, &ldb)) return false;
  if (out.stride(1) != 1 || out.stride(0) < n) return false;
  return dnnl_sgemm(ta, tb, m, n, k, 1.0f, a.data_ptr<float>(), lda, b.data_ptr<float>(), ldb, 0.0f,
                    out.data_ptr<float>(), out.stride(0)) == dnnl_success;
}
#else
bool OverwriteProduct(at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }
#endif

}  // namespace cemoe
