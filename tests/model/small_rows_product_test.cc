// small_rows_product_test.cc: the experts' few-rows products (model/moe/small_rows_product.h:
// forward, input and weight gradients)
// against a float64 product, on every ISA path this CPU runs, at row counts around the tile
// heights (16 / 32 rows), weight shapes that leave partial tiles and chunks, and row strides wider
// than the rows, in one pass over the weight and in passes of a few columns; the output's old
// contents NaN (a product that read them would be NaN) and its
// columns beyond the product left alone.
#include "model/moe/small_rows_product.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "model/check.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

// |fl(a @ b) - a @ b| <= K u (|a| @ |b|) elementwise for any summation order (u = eps / 2), so
// K eps (|a| @ |b|) bounds it with a factor 2 to spare.
void ExpectProduct(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b,
                   const std::string& what) {
  const at::Tensor want = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  const at::Tensor bound =
      at::mm(a.abs().to(at::kDouble), b.abs().to(at::kDouble)) * (a.size(1) * test::kFloat32Eps);
  const at::Tensor err = (got.to(at::kDouble) - want).abs();
  ASSERT_TRUE(at::isfinite(got).all().item<bool>()) << what << ": NaN in the product";
  EXPECT_TRUE((err <= bound).all().item<bool>())
      << what << ": worst error " << (err - bound).max().item<double>() << " above the bound";
}

std::vector<SmallRowsIsa> PathsOfThisCpu() {
  std::vector<SmallRowsIsa> paths;
  for (SmallRowsIsa isa : {SmallRowsIsa::kAvx2, SmallRowsIsa::kAvx512}) {
    if (static_cast<int>(isa) <= static_cast<int>(SmallRowsIsaDetected())) paths.push_back(isa);
  }
  return paths;
}

class SmallRowsProductTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (SmallRowsIsaDetected() == SmallRowsIsa::kNone) {
      GTEST_SKIP() << "no small-rows path on this CPU or build (x86-64 with AVX2 + FMA)";
    }
  }
  void TearDown() override {
    SetSmallRowsIsa(SmallRowsIsaDetected());
    SetSmallRowsPassBytes(0);
  }
};

// Rows of a [rows + 4, cols + 3] tensor: a row stride wider than the row.
at::Tensor RowsOfWider(int64_t rows, int64_t cols) {
  return at::randn({rows + 4, cols + 3}, at::kFloat).narrow(0, 2, rows).narrow(1, 1, cols);
}

struct Shape {
  int64_t n, k;
};
// Weight shapes leaving partial XWt blocks (24 AVX-512, 12 AVX2) and partial tiles in a block (24,
// 12 or 8 weight rows by 1, 2 or 3 vectors of rows); partial groups of 1 and 2 vectors of columns
// (XW, AtB: 29 and 40 columns on AVX-512, 40 on AVX2) and columns past the last whole vector;
// partial XW blocks of summed weight rows (48: 37, 70, 100, 256); a 256 x 96 weight fills them.
// Row counts: every split into tiles of 1-3 vectors (16 or 8 rows each) up to 4 tiles, full and
// with padding, and partial tiles of 8 or 4 rows (XW, AtB). Empty sums: a weight of no rows (an XW
// product of zeros) and of no columns (an XWt product of zeros); no rows at all.
const Shape kShapes[] = {{0, 20}, {20, 0}, {1, 1}, {37, 50}, {70, 29}, {100, 40}, {256, 96}};
// 0: the default (half the L2 cache: one pass at these sizes); 1: passes of the fewest columns
// (XWt: 16, one cache line, its partial sums kept transposed between passes; XW and AtB: one group
// of 3 vectors; split evenly, so the last pass of an odd width is shorter).
const int64_t kPassBytes[] = {0, 1};
const int64_t kRows[] = {0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 49, 64, 65, 96, 100, 128};

// For every path, pass size, weight shape and row count: a [m, in] (rows of a wider tensor), out
// [m, cols] (NaN, in a 5 columns wider tensor) = a @ b through product(a, w, out), checked
// against float64 and for writes past its columns. b_of(w) is the weight as multiplied.
template <typename Product, typename BOf>
void CheckEveryCase(const char* name, bool transposed, const Product& product, const BOf& b_of) {
  for (SmallRowsIsa isa : PathsOfThisCpu()) {
    SetSmallRowsIsa(isa);
    for (int64_t pass_bytes : kPassBytes) {
      SetSmallRowsPassBytes(pass_bytes);
      for (const Shape& s : kShapes) {
        const at::Tensor w = RowsOfWider(s.n, s.k);
        const int64_t in = transposed ? s.k : s.n, cols = transposed ? s.n : s.k;
        for (int64_t m : kRows) {
          const at::Tensor a = RowsOfWider(m, in);
          at::Tensor out_wide = at::full({m, cols + 5}, std::numeric_limits<float>::quiet_NaN());
          at::Tensor out = out_wide.narrow(1, 0, cols);
          product(a, w, out, m, s);
          const std::string what =
              fmt::format("{} {} m {} n {} k {} pass bytes {}", SmallRowsIsaName(isa), name, m, s.n,
                          s.k, pass_bytes);
          ExpectProduct(out, a, b_of(w), what);
          EXPECT_TRUE(at::isnan(out_wide.narrow(1, cols, 5)).all().item<bool>())
              << what << ": wrote past the product's columns";
        }
      }
    }
  }
}

TEST_F(SmallRowsProductTest, XWtAgainstFloat64OnEveryPath) {
  at::manual_seed(1);
  CheckEveryCase(
      "XWt", true,
      [](const at::Tensor& x, const at::Tensor& w, at::Tensor& out, int64_t m, const Shape& s) {
        SmallRowsXWt(x.data_ptr<float>(), x.stride(0), w.data_ptr<float>(), w.stride(0),
                     out.data_ptr<float>(), out.stride(0), m, s.n, s.k);
      },
      [](const at::Tensor& w) { return w.t(); });
}

TEST_F(SmallRowsProductTest, XWAgainstFloat64OnEveryPath) {
  at::manual_seed(2);
  CheckEveryCase(
      "XW", false,
      [](const at::Tensor& d, const at::Tensor& w, at::Tensor& out, int64_t m, const Shape& s) {
        SmallRowsXW(d.data_ptr<float>(), d.stride(0), w.data_ptr<float>(), w.stride(0),
                    out.data_ptr<float>(), out.stride(0), m, s.n, s.k);
      },
      [](const at::Tensor& w) { return w; });
}

// c [n, k] = (accumulate ? c0 : 0) + a [m, n]^T @ b [m, k] on every path, pass size, shape and
// row count (m: the rows summed over; the shapes' n rows of c leave partial tiles of 8 or 4 rows,
// their k columns partial groups of vectors and columns past the last whole vector). c0 random
// when accumulating, NaN when overwriting (a product that read it would be NaN); c's columns
// beyond the product NaN and left alone. Bound: K u (|c0| + |a|^T @ |b|) with K = m + 1 terms.
// Accumulating equals the overwrite plus c0 bit for bit (the sum starts from zero, as BLAS's
// beta = 1 does): backward through autograd::grad captures an overwritten gradient and adds it.
TEST_F(SmallRowsProductTest, AtBAgainstFloat64OnEveryPath) {
  at::manual_seed(3);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (SmallRowsIsa isa : PathsOfThisCpu()) {
    SetSmallRowsIsa(isa);
    for (int64_t pass_bytes : kPassBytes) {
      SetSmallRowsPassBytes(pass_bytes);
      for (const Shape& s : kShapes) {
        for (int64_t m : kRows) {
          for (bool accumulate : {false, true}) {
            const at::Tensor a = RowsOfWider(m, s.n), b = RowsOfWider(m, s.k);
            at::Tensor c_wide = at::full({s.n, s.k + 5}, nan);
            at::Tensor c = c_wide.narrow(1, 0, s.k);
            at::Tensor c0 = at::zeros({s.n, s.k}, at::kDouble);
            if (accumulate) {
              c.copy_(at::randn({s.n, s.k}));
              c0 = c.to(at::kDouble);
            }
            SmallRowsAtB(a.data_ptr<float>(), a.stride(0), b.data_ptr<float>(), b.stride(0),
                         c.data_ptr<float>(), c.stride(0), m, s.n, s.k, accumulate);
            const std::string what =
                fmt::format("{} AtB{} m {} n {} k {} pass bytes {}", SmallRowsIsaName(isa),
                            accumulate ? " accumulating" : "", m, s.n, s.k, pass_bytes);
            const at::Tensor a64 = a.to(at::kDouble), b64 = b.to(at::kDouble);
            const at::Tensor want = c0 + at::mm(a64.t(), b64);
            const at::Tensor bound =
                (c0.abs() + at::mm(a64.abs().t(), b64.abs())) * ((m + 1) * test::kFloat32Eps);
            const at::Tensor err = (c.to(at::kDouble) - want).abs();
            ASSERT_TRUE(at::isfinite(c).all().item<bool>()) << what << ": NaN in the product";
            EXPECT_TRUE((err <= bound).all().item<bool>())
                << what << ": worst error " << (err - bound).max().item<double>()
                << " above the bound";
            EXPECT_TRUE(at::isnan(c_wide.narrow(1, s.k, 5)).all().item<bool>())
                << what << ": wrote past the product's columns";
            if (accumulate) {  // rounds as the overwrite plus c0 (autograd's capture, then add)
              at::Tensor over = at::empty({s.n, s.k});
              SmallRowsAtB(a.data_ptr<float>(), a.stride(0), b.data_ptr<float>(), b.stride(0),
                           over.data_ptr<float>(), over.stride(0), m, s.n, s.k, false);
              EXPECT_TRUE(c.equal(c0.to(at::kFloat) + over))
                  << what << ": not the overwrite plus the old values, bit for bit";
            }
          }
        }
      }
    }
  }
}

TEST_F(SmallRowsProductTest, OffMeansNoRowsAndACallIsRefused) {
  SetSmallRowsIsa(SmallRowsIsa::kNone);
  for (SmallRowsBlas blas : {SmallRowsBlas::kOpenBlas, SmallRowsBlas::kMkl}) {
    EXPECT_EQ(SmallRowsMax(SmallRowsProduct::kXWt, blas), 0);
    EXPECT_EQ(SmallRowsMax(SmallRowsProduct::kXW, blas), 0);
    EXPECT_EQ(SmallRowsMax(SmallRowsProduct::kAtB, blas), 0);
    EXPECT_EQ(SmallRowsMax(SmallRowsProduct::kAtBOverwrite, blas), 0);
  }
  std::vector<float> x(4, 1.0f), w(4, 1.0f), y(4, 0.0f);
  EXPECT_THROW(SmallRowsXWt(x.data(), 2, w.data(), 2, y.data(), 2, 2, 2, 2), Error);
  EXPECT_THROW(SmallRowsXW(x.data(), 2, w.data(), 2, y.data(), 2, 2, 2, 2), Error);
  EXPECT_THROW(SmallRowsAtB(x.data(), 2, w.data(), 2, y.data(), 2, 2, 2, 2, false), Error);
}

TEST_F(SmallRowsProductTest, WideningPastTheCpuIsRefused) {
  if (SmallRowsIsaDetected() == SmallRowsIsa::kAvx512) {
    GTEST_SKIP() << "this CPU runs the widest path";
  }
  try {
    SetSmallRowsIsa(SmallRowsIsa::kAvx512);
    FAIL() << "AVX-512 accepted on a CPU without it";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("avx512 asked for"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cemoe
