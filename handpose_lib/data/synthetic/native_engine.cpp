// The renderer's per-pixel work in plain C++ for CPU tensors: the fast path of ``native.py``.
//
// This file mirrors the torch reference in ``render.py`` and ``geometry.py`` operation by
// operation, in float32 and in the same order, so that it produces the same bits: it is compiled
// with ``-ffp-contract=off`` (no fused multiply-adds the reference does not have) and without
// ``-ffast-math``; square roots are taken in double and rounded, like ``geometry._sqrt``. The only
// fused multiply-adds (``std::fma``) are in the two vector norms (pixel rays, culling distance),
// where torch's ``norm`` kernel uses them; ``native.py`` checks at load time that rays and
// culling equal ``render.pixel_rays`` and ``render.cull`` bit for bit.
//
// Why it is faster than the torch code: the torch code runs each of the ~100 elementwise steps
// over all (ray, primitive) pairs of a batch, writing every intermediate tensor to memory, and
// moves pixels between images with gathers and scatters. Here one image at a time is rendered
// from start to end with its buffers in the CPU cache: culling, depth pass (a tile's 64 rays
// against one primitive in a loop the compiler vectorises), background, shading of the hit
// pixels; then blur and noise. Images are independent, so a batch can be shared among threads.
//
// Data layout (all arrays C-contiguous, float32 unless noted; B images of H x W pixels, tile-major
// pixel index q = ((tile row * W/8 + tile col) * 64 + row in tile * 8 + col in tile)):
//   Kinv     (B, 3, 3)  inverse intrinsics (from torch.linalg.inv)
//   prim     (B, P, 16) one row per primitive slot (P = C hand cones + 6 objects):
//                       cone a(3) b(3) ra rb | sphere c(3) r | box c(3) rot(9, row-major) half(3)
//                       | cylinder a(3) b(3) r   (unused entries are 0)
//   bounds   (B, P, 8)  per slot from render.cull_bounds: ua(2) e(2) ee reach mode (0: inactive,
//                       1: test the tiles, 2: keep every tile)
//   objapp   (B, 6, 8)  object colour(3), texture kind, texture scale, texture axis(3)
//   app      (B, 32)    per-image appearance, see APP_* below
//   tex_off  (B, 2) int64 texture offsets; skin_tex, white_tex (n, n) noise textures
//   pool     (Np, 3, H + 16, W + 16) uint8 background pool
// Outputs: image (B, 3, H, W), mask (B, H, W) uint8 (0/1), depth (B, H, W), frac (B,).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

namespace {

const float INF = std::numeric_limits<float>::infinity();
const float NaN = std::numeric_limits<float>::quiet_NaN();
const int TILE = 8;
const int ID_BITS = 6;
const int64_t BIG = int64_t(1) << 62;
const int PRIM_W = 16;
const int OBJ_W = 8;
const int APP_W = 32;
const int NUM_SPHERES = 2, NUM_BOXES = 2, NUM_CYLINDERS = 2;
const int PAD = 16;

// app columns
enum {
    APP_SKIN = 0,          // 3
    APP_SKIN_TEXTURE = 3,  // 1
    APP_LIGHT_DIR = 4,     // 3
    APP_LIGHT_COLOR = 7,   // 3
    APP_AMBIENT = 10,
    APP_LIGHT_POWER = 11,
    APP_WRAP = 12,
    APP_SPECULAR = 13,
    APP_BG_U = 14,  // 5
    APP_BG_PROB = 19,
    APP_BG_GAIN = 20,   // 3
    APP_BG_PLAIN = 23,  // 3
};

// torch semantics of the few non-arithmetic operations (NaN propagates like in torch)
inline float t_min(float a, float b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
inline float t_max(float a, float b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
inline float t_clamp_min(float x, float lo) { return x < lo ? lo : x; }  // NaN stays NaN
inline float t_clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
inline float t_sign(float x) { return x > 0 ? 1.0f : (x < 0 ? -1.0f : (x == 0 ? 0.0f : x)); }
inline float t_sqrt(float x) { return (float)std::sqrt((double)x); }  // geometry._sqrt
inline float t_remainder(float a, float b) {  // torch.remainder (Python's %)
    float m = std::fmod(a, b);
    if ((m != 0) && ((b < 0) != (m < 0))) m += b;
    return m;
}
inline float f(double x) { return (float)x; }  // a Python float constant as torch uses it

struct V3 {
    float x, y, z;
};
inline V3 v3(const float* p) { return {p[0], p[1], p[2]}; }
inline V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V3 operator-(V3 a) { return {-a.x, -a.y, -a.z}; }
inline V3 operator*(V3 a, float s) { return {a.x * s, a.y * s, a.z * s}; }
inline V3 operator/(V3 a, float s) { return {a.x / s, a.y / s, a.z / s}; }
inline float dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }  // geometry._dot
inline V3 unit(V3 v, float eps) {  // geometry._unit
    float n = t_sqrt(dot(v, v));
    return v / (eps != 0 ? t_clamp_min(n, eps) : n);
}

// ---------------------------------------------------------------------------------------------
// ray intersections (geometry.py), rays t * d from the origin. Each primitive is a struct whose
// constructor computes the terms that do not depend on the ray (the same operations as the
// reference, only done once per primitive instead of once per ray) and whose ``hit`` gives t
// (inf where missed) and, when ``nrm`` is not null, the unit normal.

struct RoundCone {
    V3 pa, pb, ba;
    float ra, rb, rr, m0, m1, m5, m7, d2, k0, m1_rarr, rara, rbrb;
    explicit RoundCone(const float* q) {
        pa = v3(q), pb = v3(q + 3);
        ra = q[6], rb = q[7];
        ba = pb - pa;
        rr = ra - rb;
        m0 = dot(ba, ba);
        m1 = -dot(ba, pa);
        m5 = dot(pa, pa);
        m7 = dot(pb, pb);
        d2 = m0 - rr * rr;
        k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * f(2.0) - m0 * ra * ra;
        m1_rarr = m1 - ra * rr;
        rara = ra * ra;
        rbrb = rb * rb;
    }
    float hit(V3 d, V3* nrm) const {
        float m2 = dot(ba, d);
        float m3 = -dot(d, pa);
        float m6 = m3 - m2;
        float k2 = d2 - m2 * m2;
        float k1 = d2 * m3 - m1 * m2 + m2 * rr * ra;
        float h = k1 * k1 - k0 * k2;
        float t_body = (-t_sqrt(t_clamp_min(h, 0)) - k1) / k2;
        float y = m1_rarr + t_body * m2;  // m1 - ra * rr + t_body * m2
        float h1 = m3 * m3 - m5 + rara;
        float h2 = m6 * m6 - m7 + rbrb;
        float t1 = h1 > 0 ? -m3 - t_sqrt(t_clamp_min(h1, 0)) : INF;
        float t2 = h2 > 0 ? -m6 - t_sqrt(t_clamp_min(h2, 0)) : INF;
        // torch.minimum(t1, t2): neither is NaN (each is inf unless h > 0, then finite), so a
        // plain minimum (which the compiler vectorises, unlike t_min)
        float t_cap = t1 < t2 ? t1 : t2;
        // body = (h >= 0) & (y > 0) & (y < d2), written as selects (the vectoriser prefers them)
        float t = h >= 0 ? (y > 0 ? (y < d2 ? t_body : t_cap) : t_cap) : t_cap;
        t = t > 0 ? t : INF;
        if (nrm) {
            bool body = (h >= 0) & (y > 0) & (y < d2);
            V3 p = d * t;
            V3 n;
            if (body) {
                V3 e = p - pa;
                n = {e.x * d2 - ba.x * y, e.y * d2 - ba.y * y, e.z * d2 - ba.z * y};
            } else {
                n = (t1 <= t2) ? (p - pa) / ra : (p - pb) / rb;
            }
            *nrm = unit(n, f(1e-9));
        }
        return t;
    }
};

struct Sphere {
    V3 c;
    float r, cc, rr;
    explicit Sphere(const float* q) : c(v3(q)), r(q[3]), cc(dot(c, c)), rr(r * r) {}
    float hit(V3 d, V3* nrm) const {
        float b = dot(d, c);
        float h = b * b - cc + rr;
        float t = h > 0 ? b - t_sqrt(t_clamp_min(h, 0)) : INF;
        t = t > 0 ? t : INF;
        if (nrm) *nrm = (d * t - c) / r;
        return t;
    }
};

// rot^T v: coordinates of v on the columns of the row-major rotation r
inline V3 rot_t(const float* r, V3 v) {
    return {r[0] * v.x + r[3] * v.y + r[6] * v.z, r[1] * v.x + r[4] * v.y + r[7] * v.z,
            r[2] * v.x + r[5] * v.y + r[8] * v.z};
}

struct Box {
    float rot[9];  // (3, 3) row-major, columns = the box axes
    V3 nego, half;  // -o (o: the ray origin in box coordinates), half extents
    explicit Box(const float* q) {
        for (int i = 0; i < 9; i++) rot[i] = q[3 + i];
        nego = -(-rot_t(rot, v3(q)));  // -o with o = -rot^T c
        half = v3(q + 12);
    }
    // one slab: t1, t2 of the axis with direction component dl
    static inline void slab(float dl, float nego, float half, float& t1, float& t2) {
        const float tiny = f(1e-12);
        float inv = 1.0f / (std::fabs(dl) < tiny ? tiny : dl);
        float n = nego * inv;
        float k = std::fabs(inv) * half;
        t1 = n - k;
        t2 = n + k;
    }
    float hit(V3 d, V3* nrm) const {
        V3 dl = rot_t(rot, d);
        float t1x, t2x, t1y, t2y, t1z, t2z;
        slab(dl.x, nego.x, half.x, t1x, t2x);
        slab(dl.y, nego.y, half.y, t1y, t2y);
        slab(dl.z, nego.z, half.z, t1z, t2z);
        float tn = t_max(t_max(t1x, t1y), t1z);
        float tf = t_min(t_min(t2x, t2y), t2z);
        bool hit = (tn < tf) & (tf > 0);
        float t = (hit & (tn > 0)) ? tn : INF;
        if (nrm) {
            // argmax of (t1x, t1y, t1z): the first maximum
            int axis = t1y > t1x ? 1 : 0;
            if (t1z > (axis ? t1y : t1x)) axis = 2;
            float nl[3] = {(axis == 0 ? 1.0f : 0.0f) * -t_sign(dl.x), (axis == 1 ? 1.0f : 0.0f) * -t_sign(dl.y),
                           (axis == 2 ? 1.0f : 0.0f) * -t_sign(dl.z)};
            // rot nl (geometry._rot)
            *nrm = {rot[0] * nl[0] + rot[1] * nl[1] + rot[2] * nl[2],
                    rot[3] * nl[0] + rot[4] * nl[1] + rot[5] * nl[2],
                    rot[6] * nl[0] + rot[7] * nl[1] + rot[8] * nl[2]};
        }
        return t;
    }
};

struct Cylinder {
    V3 pa, ba, oc;
    float r, baba, baoc, k0;
    explicit Cylinder(const float* q) {
        pa = v3(q);
        V3 pb = v3(q + 3);
        r = q[6];
        ba = pb - pa;
        oc = -pa;
        baba = dot(ba, ba);
        baoc = dot(ba, oc);
        k0 = baba * dot(oc, oc) - baoc * baoc - r * r * baba;
    }
    float hit(V3 d, V3* nrm) const {
        float bard = dot(ba, d);
        float k2 = baba - bard * bard;
        float k1 = baba * dot(oc, d) - baoc * bard;
        float h = k1 * k1 - k2 * k0;
        float hs = t_sqrt(t_clamp_min(h, 0));
        float t_body = (-k1 - hs) / k2;
        float y = baoc + t_body * bard;
        bool body = (h >= 0) & (y > 0) & (y < baba);
        float t_cap = ((y < 0 ? 0.0f : baba) - baoc) / bard;
        bool cap = (h >= 0) & (std::fabs(k1 + k2 * t_cap) < hs);
        float t = body ? t_body : (cap ? t_cap : INF);
        t = t > 0 ? t : INF;
        if (nrm) {
            if (body) {
                V3 p = d * t;
                float s = y / baba;
                *nrm = V3{(p.x - pa.x) - ba.x * s, (p.y - pa.y) - ba.y * s, (p.z - pa.z) - ba.z * s} / r;
            } else {
                *nrm = ba * (t_sign(y) / t_sqrt(baba));
            }
        }
        return t;
    }
};

enum Kind { CONE, SPHERE, BOX, CYL };

struct Layout {  // render.slot_layout
    int C;
    Kind kind(int s) const {
        if (s < C) return CONE;
        if (s < C + NUM_SPHERES) return SPHERE;
        if (s < C + NUM_SPHERES + NUM_BOXES) return BOX;
        return CYL;
    }
};

// Rays of one image in structure-of-arrays layout (x, y, z each (HW,)), tile-major.
struct Rays {
    std::vector<float> x, y, z;
    explicit Rays(int HW) : x(HW), y(HW), z(HW) {}
    V3 operator[](int q) const { return {x[q], y[q], z[q]}; }
};

// render._tile_keys for one (slot, tile): keep per pixel the smallest key (depth << 6 | slot)
// (not inlined: compiled on its own, GCC vectorises the first loop, 8 rays at a time with AVX2)
template <class Prim>
__attribute__((noinline)) void tile_keys(const Prim& pr, const Rays& rays, int tile, int s, int64_t* z) {
    float t[64];
    const float *rx = rays.x.data() + tile * 64, *ry = rays.y.data() + tile * 64, *rz = rays.z.data() + tile * 64;
    for (int l = 0; l < 64; l++) t[l] = pr.hit(V3{rx[l], ry[l], rz[l]}, nullptr);
    for (int l = 0; l < 64; l++) {
        int64_t key = std::isfinite(t[l]) ? ((int64_t)std::fmin(t[l] * 16.0f, 1099511627776.0f)) << ID_BITS : BIG;
        key |= s;
        if (key < z[l]) z[l] = key;
    }
}

inline float intersect(Kind k, V3 d, const float* q, V3* nrm) {
    switch (k) {
        case CONE: return RoundCone(q).hit(d, nrm);
        case SPHERE: return Sphere(q).hit(d, nrm);
        case BOX: return Box(q).hit(d, nrm);
        default: return Cylinder(q).hit(d, nrm);
    }
}

// render.pixel_rays for one image (tile-major)
void image_rays(const float* Kinv, int H, int W, Rays& rays) {
    float Ki[9];  // a local copy: the compiler then knows the output does not overwrite it
    for (int i = 0; i < 9; i++) Ki[i] = Kinv[i];
    const int Tw = W / TILE;
    float *rx = rays.x.data(), *ry = rays.y.data(), *rz = rays.z.data();
    for (int tile = 0; tile < (H / TILE) * Tw; tile++) {
        for (int lane = 0; lane < 64; lane++) {
            int q = tile * 64 + lane;
            float u = (float)((tile % Tw) * TILE + lane % TILE) + 0.5f;
            float v = (float)((tile / Tw) * TILE + lane / TILE) + 0.5f;
            // homo @ Kinv^T
            float dx = u * Ki[0] + v * Ki[1] + Ki[2];
            float dy = u * Ki[3] + v * Ki[4] + Ki[5];
            float dz = u * Ki[6] + v * Ki[7] + Ki[8];
            // d.norm(dim=-1): torch's kernel accumulates the squares with fused multiply-adds
            float n = t_sqrt(std::fma(dz, dz, std::fma(dy, dy, dx * dx)));
            rx[q] = dx / n;
            ry[q] = dy / n;
            rz[q] = dz / n;
        }
    }
}

// render.cull for one slot: whether tile (tx, ty) may see it (a slot whose bound holds, mode 1)
inline bool keep_tile(const float* bd, int tx, int ty) {
    float w0 = (float)tx * (float)TILE + (float)(TILE / 2) - bd[0];  // tile centre - ua
    float w1 = (float)ty * (float)TILE + (float)(TILE / 2) - bd[1];
    float h = t_clamp((w0 * bd[2] + w1 * bd[3]) / bd[4], 0.0f, 1.0f);
    float dx = w0 - h * bd[2], dy = w1 - h * bd[3];
    float dist = t_sqrt(std::fma(dy, dy, dx * dx));  // norm(dim=-1), as torch rounds it
    return dist <= bd[5];
}

// keep (T,) of one slot: its tiles to test (bd[6]: mode 0 inactive, 1 test, 2 keep all)
void keep_tiles(const float* bd, int H, int W, uint8_t* keep) {
    const int Tw = W / TILE, T = (H / TILE) * Tw;
    if (bd[6] != 1.0f) {
        std::memset(keep, bd[6] == 2.0f ? 1 : 0, T);
        return;
    }
    float b[8];  // a local copy: the compiler then knows keep does not overwrite it
    for (int i = 0; i < 8; i++) b[i] = bd[i];
    for (int ty = 0; ty < H / TILE; ty++)
        for (int tx = 0; tx < Tw; tx++) keep[ty * Tw + tx] = keep_tile(b, tx, ty);
}

// Run fn(b0, b1) on n_threads threads, each on its own contiguous range of the B images (the
// images are independent; each range has its own scratch buffers).
template <class F>
void parallel_images(int B, int n_threads, F fn) {
    int nt = std::max(1, std::min(n_threads, B));
    if (nt == 1) return fn(0, B);
    std::vector<std::thread> threads;
    for (int i = 0; i < nt; i++) threads.emplace_back(fn, (int)((int64_t)B * i / nt), (int)((int64_t)B * (i + 1) / nt));
    for (auto& t : threads) t.join();
}

void render_range(int b0, int b1, int H, int W, int C, const float* Kinv, const float* rays_in, const float* prim,
                  const float* bounds, const float* objapp, const float* app, const int64_t* tex_off,
                  const float* skin_tex, int tex_n, const uint8_t* pool, int n_pool, float* image, uint8_t* mask,
                  float* depth, float* frac);
void blur_range(int b0, int b1, int H, int W, float* image, const float* gk, const float* sigma);
void noise_range(int b0, int b1, int H, int W, float* image, const float* white_tex, int tex_n,
                 const int64_t* tex_off, const float* noise);

}  // namespace

extern "C" {

// render.cull as a mask: keep (B, P, T) uint8; used to check the kernel against torch
void hp_cull(int B, int P, int H, int W, const float* bounds, uint8_t* keep) {
    const int T = (H / TILE) * (W / TILE);
    for (int64_t bp = 0; bp < (int64_t)B * P; bp++) keep_tiles(bounds + 8 * bp, H, W, keep + bp * T);
}

// render.pixel_rays: Kinv (B, 3, 3) -> rays (B, HW, 3); used to check the kernel against torch
void hp_rays(int B, int H, int W, const float* Kinv, float* rays) {
    const int HW = H * W;
    Rays r(HW);
    for (int b = 0; b < B; b++) {
        image_rays(Kinv + 9 * b, H, W, r);
        float* out = rays + (int64_t)b * HW * 3;
        for (int q = 0; q < HW; q++) out[3 * q] = r.x[q], out[3 * q + 1] = r.y[q], out[3 * q + 2] = r.z[q];
    }
}

// render.render up to (not including) postprocess: culling, depth pass, shading, background,
// composition and the occlusion fraction. rays_in: optional (B, HW, 3) rays from
// torch (nullptr: computed here). n_threads: threads to share the images.
void hp_render(int B, int H, int W, int C, const float* Kinv, const float* rays_in, const float* prim,
               const float* bounds, const float* objapp, const float* app, const int64_t* tex_off,
               const float* skin_tex, int tex_n, const uint8_t* pool, int n_pool, float* image, uint8_t* mask,
               float* depth, float* frac, int n_threads) {
    parallel_images(B, n_threads, [&](int b0, int b1) {
        render_range(b0, b1, H, W, C, Kinv, rays_in, prim, bounds, objapp, app, tex_off, skin_tex, tex_n, pool,
                     n_pool, image, mask, depth, frac);
    });
}

// render._blur on the images whose sigma > 0 (taps gk (B, 5) from render._gauss5), in place
void hp_blur(int B, int H, int W, float* image, const float* gk, const float* sigma, int n_threads) {
    parallel_images(B, n_threads, [&](int b0, int b1) { blur_range(b0, b1, H, W, image, gk, sigma); });
}

// render._add_noise, in place: noise (B,) std, white_tex (n, n), tex_off (B, 2)
void hp_noise(int B, int H, int W, float* image, const float* white_tex, int tex_n, const int64_t* tex_off,
              const float* noise, int n_threads) {
    parallel_images(B, n_threads, [&](int b0, int b1) {
        noise_range(b0, b1, H, W, image, white_tex, tex_n, tex_off, noise);
    });
}

}  // extern "C"

namespace {

// images [b0, b1) of hp_render
void render_range(int b0, int b1, int H, int W, int C, const float* Kinv, const float* rays_in, const float* prim,
                  const float* bounds, const float* objapp, const float* app, const int64_t* tex_off,
                  const float* skin_tex, int tex_n, const uint8_t* pool, int n_pool, float* image, uint8_t* mask,
                  float* depth, float* frac) {
    const int HW = H * W, Tw = W / TILE, T = HW / 64, P = C + NUM_SPHERES + NUM_BOXES + NUM_CYLINDERS;
    const int PH = H + PAD, PW = W + PAD;
    const Layout lay{C};
    Rays rays(HW);
    std::vector<int64_t> zh(HW), zo(HW);
    std::vector<uint8_t> keep(T);
    std::vector<int> row_of(HW), col_of(HW), tex_row(H), tex_col(W);
    for (int q = 0; q < HW; q++) {  // image row and column of tile-major pixel q
        int tile = q / 64, lane = q % 64;
        row_of[q] = (tile / Tw) * TILE + lane / TILE;
        col_of[q] = (tile % Tw) * TILE + lane % TILE;
    }
    for (int b = b0; b < b1; b++) {
        if (rays_in) {
            const float* r = rays_in + (int64_t)b * HW * 3;
            for (int q = 0; q < HW; q++) rays.x[q] = r[3 * q], rays.y[q] = r[3 * q + 1], rays.z[q] = r[3 * q + 2];
        } else {
            image_rays(Kinv + 9 * b, H, W, rays);
        }
        const float* pb = prim + (int64_t)b * P * PRIM_W;
        // --- culling and depth pass (render.cull, depth_pass, _tile_keys): nearest key per pixel
        std::fill(zh.begin(), zh.end(), BIG);
        std::fill(zo.begin(), zo.end(), BIG);
        for (int s = 0; s < P; s++) {
            const float* bd = bounds + ((int64_t)b * P + s) * 8;
            if (bd[6] == 0.0f) continue;  // inactive slot
            const float* q = pb + s * PRIM_W;
            keep_tiles(bd, H, W, keep.data());
            auto test_tiles = [&](const auto& prim, int64_t* z) {
                for (int tile = 0; tile < T; tile++)
                    if (keep[tile]) tile_keys(prim, rays, tile, s, z + tile * 64);
            };
            switch (lay.kind(s)) {
                case CONE: test_tiles(RoundCone(q), zh.data()); break;
                case SPHERE: test_tiles(Sphere(q), zo.data()); break;
                case BOX: test_tiles(Box(q), zo.data()); break;
                default: test_tiles(Cylinder(q), zo.data());
            }
        }
        // --- background (render._background) everywhere; the shading below overwrites the hits
        const float* a = app + (int64_t)b * APP_W;
        const float* oa = objapp + (int64_t)b * 6 * OBJ_W;
        int64_t idx = (int64_t)(a[APP_BG_U] * (float)n_pool);
        if (idx > n_pool - 1) idx = n_pool - 1;
        int boy = (int)(int64_t)(a[APP_BG_U + 1] * (float)PAD);
        int box_ = (int)(int64_t)(a[APP_BG_U + 2] * (float)PAD);
        bool flip = a[APP_BG_U + 3] < 0.5f;
        bool photo = a[APP_BG_U + 4] < a[APP_BG_PROB];
        const uint8_t* pimg = pool + idx * 3 * PH * PW;
        const float inv255 = f(1.0 / 255.0);
        float* img = image + (int64_t)b * 3 * HW;
        uint8_t* mk = mask + (int64_t)b * HW;
        float* dp = depth + (int64_t)b * HW;
        for (int c = 0; c < 3; c++) {
            const float gain = a[APP_BG_GAIN + c], plain = a[APP_BG_PLAIN + c];
            for (int row = 0; row < H; row++) {
                float* out = img + c * HW + row * W;
                const uint8_t* src = pimg + (c * PH + boy + row) * PW + box_;  // pool row, shifted
                if (!photo) {
                    for (int col = 0; col < W; col++) out[col] = plain;
                } else if (flip) {
                    for (int col = 0; col < W; col++) out[col] = t_clamp((float)src[W - 1 - col] * inv255 * gain, 0.0f, 1.0f);
                } else {
                    for (int col = 0; col < W; col++) out[col] = t_clamp((float)src[col] * inv255 * gain, 0.0f, 1.0f);
                }
            }
        }
        std::memset(mk, 0, HW);
        std::fill(dp, dp + HW, 0.0f);
        // --- shading (render.shade / _surface_colour) and composition of the hit pixels
        int64_t oy_ = tex_off[2 * b + 1], ox_ = tex_off[2 * b];
        for (int row = 0; row < H; row++) tex_row[row] = (int)((row + oy_) % tex_n);  // skin texture
        for (int col = 0; col < W; col++) tex_col[col] = (int)((col + ox_) % tex_n);  // coordinates
        V3 L = v3(a + APP_LIGHT_DIR);
        float wrap = a[APP_WRAP];
        int n_hand = 0, n_occ = 0;
        for (int q = 0; q < HW; q++) {
            int64_t kh = zh[q], ko = zo[q];
            if (kh < BIG) {
                n_hand++;
                if (ko < kh) n_occ++;
            }
            int64_t key = kh < ko ? kh : ko;
            if (key >= BIG) continue;  // background pixel
            int row = row_of[q], col = col_of[q];
            int pix = row * W + col;
            int s = (int)(key & ((1 << ID_BITS) - 1));
            V3 d = rays[q];
            V3 nrm;
            float t = intersect(lay.kind(s), d, pb + s * PRIM_W, &nrm);
            V3 p = d * t;
            bool is_hand = s < C;
            float albedo[3];
            if (is_hand) {
                float sn = skin_tex[tex_row[row] * tex_n + tex_col[col]];
                float fac = 1.0f + a[APP_SKIN_TEXTURE] * sn;
                for (int c = 0; c < 3; c++) albedo[c] = a[APP_SKIN + c] * fac;
            } else {
                int oi = s - C;
                const float* o = oa + oi * OBJ_W;
                float kind = o[3], sc = o[4];
                float cell0 = std::floor(p.x / sc), cell1 = std::floor(p.y / sc), cell2 = std::floor(p.z / sc);
                float checker = t_remainder(cell0 + cell1 + cell2, 2.0f) * f(0.35);
                float stripes = t_remainder(std::floor(dot(p, v3(o + 5)) / sc), 2.0f) * f(0.35);
                float fac = 1.0f - (kind == 1.0f ? checker : (kind == 2.0f ? stripes : 0.0f));
                for (int c = 0; c < 3; c++) albedo[c] = o[c] * fac;
            }
            float ndl = dot(nrm, L);
            float diffuse = t_clamp_min((ndl + wrap) / (1.0f + wrap), 0.0f);
            float sp = t_clamp_min(dot(nrm, unit(L - d, 0.0f)), 0.0f);
            float s8 = (sp * sp) * (sp * sp);
            s8 = s8 * s8;
            float spec = (s8 * s8) * s8 * a[APP_SPECULAR] * (is_hand ? 1.0f : f(1.6));
            float rim = f(0.7) + f(0.3) * t_clamp(-dot(nrm, d), 0.0f, 1.0f);
            float light = a[APP_AMBIENT] + a[APP_LIGHT_POWER] * diffuse;
            float lr = light * rim;
            for (int c = 0; c < 3; c++)
                img[c * HW + pix] = t_clamp(albedo[c] * lr * a[APP_LIGHT_COLOR + c] + spec, 0.0f, 1.0f);
            mk[pix] = is_hand;
            dp[pix] = is_hand ? p.z : 0.0f;
        }
        frac[b] = (float)n_occ / (float)(n_hand > 1 ? n_hand : 1);
    }
}

// images [b0, b1) of hp_blur
void blur_range(int b0, int b1, int H, int W, float* image, const float* gk, const float* sigma) {
    std::vector<float> tmp((size_t)H * W), row(W + 4), acc(W);
    for (int b = b0; b < b1; b++) {
        if (!(sigma[b] > 0)) continue;
        float w[5];
        for (int k = 0; k < 5; k++) w[k] = gk[5 * b + k];
        for (int c = 0; c < 3; c++) {
            float* x = image + ((int64_t)b * 3 + c) * H * W;
            for (int i = 0; i < H; i++) {  // along rows: F.pad(replicate), then the 5 taps in order
                const float* xi = x + i * W;
                row[0] = row[1] = xi[0];
                std::memcpy(row.data() + 2, xi, W * sizeof(float));
                row[W + 2] = row[W + 3] = xi[W - 1];
                float* out = tmp.data() + i * W;
                for (int j = 0; j < W; j++) out[j] = 0.0f;
                for (int k = 0; k < 5; k++)
                    for (int j = 0; j < W; j++) out[j] = out[j] + w[k] * row[j + k];
            }
            for (int i = 0; i < H; i++) {  // along columns, the padded rows clamped
                for (int j = 0; j < W; j++) acc[j] = 0.0f;
                for (int k = 0; k < 5; k++) {
                    int ii = std::min(std::max(i + k - 2, 0), H - 1);
                    const float* src = tmp.data() + ii * W;
                    for (int j = 0; j < W; j++) acc[j] = acc[j] + w[k] * src[j];
                }
                std::memcpy(x + i * W, acc.data(), W * sizeof(float));
            }
        }
    }
}

// images [b0, b1) of hp_noise
void noise_range(int b0, int b1, int H, int W, float* image, const float* white_tex, int tex_n,
                 const int64_t* tex_off, const float* noise) {
    std::vector<float> nz(W);
    for (int b = b0; b < b1; b++) {
        float amp = noise[b] * f(std::sqrt(12.0));
        int64_t oy = tex_off[2 * b + 1] * 3, ox = tex_off[2 * b] * 7;
        for (int i = 0; i < H; i++) {
            const float* trow = white_tex + ((i + oy) % tex_n) * tex_n;
            for (int j = 0; j < W; j++) nz[j] = amp * trow[(j + ox) % tex_n];  // the same for 3 channels
            for (int c = 0; c < 3; c++) {
                float* x = image + (((int64_t)b * 3 + c) * H + i) * W;
                for (int j = 0; j < W; j++) x[j] = t_clamp(x[j] + nz[j], 0.0f, 1.0f);
            }
        }
    }
}

}  // namespace
