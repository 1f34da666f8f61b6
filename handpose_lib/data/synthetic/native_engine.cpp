// The renderer's per-pixel work in plain C++ for CPU tensors: the fast path of ``native.py``.
//
// This file mirrors the torch reference in ``render.py`` and ``geometry.py`` operation by
// operation, in float32 and in the same order, so that it produces the same bits: it is compiled
// with ``-ffp-contract=off`` (no fused multiply-adds the reference does not have) and without
// ``-ffast-math``; square roots are taken in double and rounded, like ``geometry._sqrt``. The one
// fused multiply-add (``std::fma``) is in the ray normalisation, where torch's ``norm`` kernel uses
// one; ``native.py`` checks at load time that the rays equal ``render.pixel_rays`` bit for bit.
//
// Why it is faster than the torch code: the torch code runs each of the ~100 elementwise steps
// over all (ray, primitive) pairs of a batch, writing every intermediate tensor to memory, and
// moves pixels between images with gathers and scatters. Here one image at a time is rendered
// from start to end with its depth buffers in the CPU cache, and each ray test is a few dozen
// float operations in registers.
//
// Data layout (all arrays C-contiguous, float32 unless noted; B images of H x W pixels, tile-major
// pixel index q = ((tile row * W/8 + tile col) * 64 + row in tile * 8 + col in tile)):
//   Kinv     (B, 3, 3)  inverse intrinsics (from torch.linalg.inv)
//   prim     (B, P, 16) one row per primitive slot (P = C hand cones + 6 objects):
//                       cone a(3) b(3) ra rb | sphere c(3) r | box c(3) rot(9, row-major) half(3)
//                       | cylinder a(3) b(3) r   (unused entries are 0)
//   triples  (N, 3) int64 work list (image, slot, tile) from render.cull, sorted by image
//   objapp   (B, 6, 8)  object colour(3), texture kind, texture scale, texture axis(3)
//   app      (B, 32)    per-image appearance, see APP_* below
//   tex_off  (B, 2) int64 texture offsets; skin_tex, white_tex (n, n) noise textures
//   pool     (Np, 3, H + 16, W + 16) uint8 background pool
// Outputs: image (B, 3, H, W), mask (B, H, W) uint8 (0/1), depth (B, H, W), frac (B,).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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
inline float t_min(float a, float b) { return (a != a || b != b) ? NaN : (a < b ? a : b); }
inline float t_max(float a, float b) { return (a != a || b != b) ? NaN : (a > b ? a : b); }
inline float t_clamp_min(float x, float lo) { return x != x ? x : (x < lo ? lo : x); }
inline float t_clamp(float x, float lo, float hi) { return x != x ? x : (x < lo ? lo : (x > hi ? hi : x)); }
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
// ray intersections (geometry.py), rays t * d from the origin; normals only when nrm != nullptr

float ray_round_cone(V3 d, const float* q, V3* nrm) {
    V3 pa = v3(q), pb = v3(q + 3);
    float ra = q[6], rb = q[7];
    V3 ba = pb - pa;
    float rr = ra - rb;
    float m0 = dot(ba, ba);
    float m1 = -dot(ba, pa);
    float m5 = dot(pa, pa);
    float m2 = dot(ba, d);
    float m3 = -dot(d, pa);
    float m6 = m3 - m2;
    float m7 = dot(pb, pb);
    float d2 = m0 - rr * rr;
    float k2 = d2 - m2 * m2;
    float k1 = d2 * m3 - m1 * m2 + m2 * rr * ra;
    float k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * f(2.0) - m0 * ra * ra;
    float h = k1 * k1 - k0 * k2;
    float t_body = (-t_sqrt(t_clamp_min(h, 0)) - k1) / k2;
    float y = m1 - ra * rr + t_body * m2;
    bool body = (h >= 0) && (y > 0) && (y < d2);
    float h1 = m3 * m3 - m5 + ra * ra;
    float h2 = m6 * m6 - m7 + rb * rb;
    float t1 = h1 > 0 ? -m3 - t_sqrt(t_clamp_min(h1, 0)) : INF;
    float t2 = h2 > 0 ? -m6 - t_sqrt(t_clamp_min(h2, 0)) : INF;
    float t_cap = t_min(t1, t2);
    float t = body ? t_body : t_cap;
    t = t > 0 ? t : INF;
    if (nrm) {
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

float ray_sphere(V3 d, const float* q, V3* nrm) {
    V3 c = v3(q);
    float r = q[3];
    float b = dot(d, c);
    float h = b * b - dot(c, c) + r * r;
    float t = h > 0 ? b - t_sqrt(t_clamp_min(h, 0)) : INF;
    t = t > 0 ? t : INF;
    if (nrm) *nrm = (d * t - c) / r;
    return t;
}

// rot^T v: coordinates of v on the columns of the row-major rotation r
inline V3 rot_t(const float* r, V3 v) {
    return {r[0] * v.x + r[3] * v.y + r[6] * v.z, r[1] * v.x + r[4] * v.y + r[7] * v.z,
            r[2] * v.x + r[5] * v.y + r[8] * v.z};
}

float ray_box(V3 d, const float* q, V3* nrm) {
    V3 c = v3(q);
    const float* rot = q + 3;
    const float* half = q + 12;
    V3 o = -rot_t(rot, c);
    V3 dlv = rot_t(rot, d);
    float dl[3] = {dlv.x, dlv.y, dlv.z}, ov[3] = {o.x, o.y, o.z}, t1[3], t2[3];
    const float tiny = f(1e-12);
    for (int i = 0; i < 3; i++) {
        float inv = 1.0f / (std::fabs(dl[i]) < tiny ? tiny : dl[i]);
        float n = -ov[i] * inv;
        float k = std::fabs(inv) * half[i];
        t1[i] = n - k;
        t2[i] = n + k;
    }
    float tn = t_max(t_max(t1[0], t1[1]), t1[2]);
    float tf = t_min(t_min(t2[0], t2[1]), t2[2]);
    bool hit = (tn < tf) && (tf > 0);
    float t = (hit && (tn > 0)) ? tn : INF;
    if (nrm) {
        int axis = 0;  // argmax: first maximum
        for (int i = 1; i < 3; i++)
            if (t1[i] > t1[axis]) axis = i;
        float nl[3];
        for (int i = 0; i < 3; i++) nl[i] = (i == axis ? 1.0f : 0.0f) * -t_sign(dl[i]);
        // rot nl (geometry._rot)
        *nrm = {rot[0] * nl[0] + rot[1] * nl[1] + rot[2] * nl[2], rot[3] * nl[0] + rot[4] * nl[1] + rot[5] * nl[2],
                rot[6] * nl[0] + rot[7] * nl[1] + rot[8] * nl[2]};
    }
    return t;
}

float ray_cylinder(V3 d, const float* q, V3* nrm) {
    V3 pa = v3(q), pb = v3(q + 3);
    float r = q[6];
    V3 ba = pb - pa;
    V3 oc = -pa;
    float baba = dot(ba, ba);
    float bard = dot(ba, d);
    float baoc = dot(ba, oc);
    float k2 = baba - bard * bard;
    float k1 = baba * dot(oc, d) - baoc * bard;
    float k0 = baba * dot(oc, oc) - baoc * baoc - r * r * baba;
    float h = k1 * k1 - k2 * k0;
    float hs = t_sqrt(t_clamp_min(h, 0));
    float t_body = (-k1 - hs) / k2;
    float y = baoc + t_body * bard;
    bool body = (h >= 0) && (y > 0) && (y < baba);
    float t_cap = ((y < 0 ? 0.0f : baba) - baoc) / bard;
    bool cap = (h >= 0) && (std::fabs(k1 + k2 * t_cap) < hs);
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

inline float intersect(Kind k, V3 d, const float* q, V3* nrm) {
    switch (k) {
        case CONE: return ray_round_cone(d, q, nrm);
        case SPHERE: return ray_sphere(d, q, nrm);
        case BOX: return ray_box(d, q, nrm);
        default: return ray_cylinder(d, q, nrm);
    }
}

// render.pixel_rays for one image: (HW, 3) unit directions, tile-major
void image_rays(const float* Ki, int H, int W, float* rays) {
    const int Tw = W / TILE, HW = H * W;
    for (int q = 0; q < HW; q++) {
        int tile = q / 64, lane = q % 64;
        float u = (float)((tile % Tw) * TILE + lane % TILE) + 0.5f;
        float v = (float)((tile / Tw) * TILE + lane / TILE) + 0.5f;
        // homo @ Kinv^T; Kinv is upper triangular with Kinv[2] = (0, 0, 1) for pinhole K
        float dx = u * Ki[0] + v * Ki[1] + Ki[2];
        float dy = u * Ki[3] + v * Ki[4] + Ki[5];
        float dz = u * Ki[6] + v * Ki[7] + Ki[8];
        // d.norm(dim=-1): torch's kernel accumulates the squares with fused multiply-adds
        float ss = std::fma(dz, dz, std::fma(dy, dy, dx * dx));
        float n = t_sqrt(ss);
        rays[3 * q] = dx / n;
        rays[3 * q + 1] = dy / n;
        rays[3 * q + 2] = dz / n;
    }
}

}  // namespace

extern "C" {

// render.pixel_rays: Kinv (B, 3, 3) -> rays (B, HW, 3); used to check the kernel against torch
void hp_rays(int B, int H, int W, const float* Kinv, float* rays) {
    for (int b = 0; b < B; b++) image_rays(Kinv + 9 * b, H, W, rays + (int64_t)b * H * W * 3);
}

// render.render up to (not including) postprocess: depth pass over the work list, shading,
// background, composition and the occlusion fraction. rays_in: optional (B, HW, 3) rays from
// torch (nullptr: computed here).
void hp_render(int B, int H, int W, int C, const float* Kinv, const float* rays_in, const float* prim,
               const int64_t* triples, int64_t N, const float* objapp, const float* app, const int64_t* tex_off,
               const float* skin_tex, int tex_n, const uint8_t* pool, int n_pool, float* image, uint8_t* mask,
               float* depth, float* frac) {
    const int HW = H * W, Tw = W / TILE, P = C + NUM_SPHERES + NUM_BOXES + NUM_CYLINDERS;
    const int PH = H + PAD, PW = W + PAD;
    const Layout lay{C};
    std::vector<float> rays_buf(rays_in ? 0 : (size_t)HW * 3);
    std::vector<int64_t> zh(HW), zo(HW);
    int64_t n0 = 0;  // first triple of image b
    for (int b = 0; b < B; b++) {
        const float* rays = rays_in ? rays_in + (int64_t)b * HW * 3 : rays_buf.data();
        if (!rays_in) image_rays(Kinv + 9 * b, H, W, rays_buf.data());
        const float* pb = prim + (int64_t)b * P * PRIM_W;
        // --- depth pass (render.depth_pass / _tile_keys): nearest key per pixel
        std::fill(zh.begin(), zh.end(), BIG);
        std::fill(zo.begin(), zo.end(), BIG);
        int64_t n1 = n0;
        while (n1 < N && triples[3 * n1] == b) n1++;
        for (int64_t i = n0; i < n1; i++) {
            int s = (int)triples[3 * i + 1];
            int tile = (int)triples[3 * i + 2];
            Kind k = lay.kind(s);
            int64_t* z = (k == CONE ? zh.data() : zo.data()) + tile * 64;
            const float* q = pb + s * PRIM_W;
            const float* r = rays + tile * 64 * 3;
            for (int l = 0; l < 64; l++) {
                float t = intersect(k, v3(r + 3 * l), q, nullptr);
                int64_t key = std::isfinite(t) ? ((int64_t)std::fmin(t * 16.0f, 1099511627776.0f)) << ID_BITS : BIG;
                key |= s;
                if (key < z[l]) z[l] = key;
            }
        }
        n0 = n1;
        // --- shading (render.shade / _surface_colour), background and composition
        const float* a = app + (int64_t)b * APP_W;
        const float* oa = objapp + (int64_t)b * 6 * OBJ_W;
        int64_t oy_ = tex_off[2 * b + 1], ox_ = tex_off[2 * b];
        // background (render._background)
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
        V3 L = v3(a + APP_LIGHT_DIR);
        float wrap = a[APP_WRAP];
        int n_hand = 0, n_occ = 0;
        for (int q = 0; q < HW; q++) {
            int tile = q / 64, lane = q % 64;
            int row = (tile / Tw) * TILE + lane / TILE;
            int col = (tile % Tw) * TILE + lane % TILE;
            int pix = row * W + col;
            int64_t kh = zh[q], ko = zo[q];
            if (kh < BIG) {
                n_hand++;
                if (ko < kh) n_occ++;
            }
            int64_t key = kh < ko ? kh : ko;
            if (key >= BIG) {  // background pixel
                mk[pix] = 0;
                dp[pix] = 0.0f;
                int pc = flip ? box_ + (W - 1 - col) : box_ + col;
                for (int c = 0; c < 3; c++) {
                    float v;
                    if (photo) {
                        float g = (float)pimg[(c * PH + boy + row) * PW + pc] * inv255;
                        v = t_clamp(g * a[APP_BG_GAIN + c], 0.0f, 1.0f);
                    } else {
                        v = a[APP_BG_PLAIN + c];
                    }
                    img[c * HW + pix] = v;
                }
                continue;
            }
            int s = (int)(key & ((1 << ID_BITS) - 1));
            V3 d = v3(rays + 3 * q);
            V3 nrm;
            float t = intersect(lay.kind(s), d, pb + s * PRIM_W, &nrm);
            V3 p = d * t;
            bool is_hand = s < C;
            float albedo[3];
            if (is_hand) {
                int64_t ty = (row + oy_) % tex_n, tx = (col + ox_) % tex_n;
                float sn = skin_tex[ty * tex_n + tx];
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

// render._blur on the images whose sigma > 0 (taps gk (B, 5) from render._gauss5), in place
void hp_blur(int B, int H, int W, float* image, const float* gk, const float* sigma) {
    std::vector<float> tmp((size_t)H * W);
    for (int b = 0; b < B; b++) {
        if (!(sigma[b] > 0)) continue;
        const float* w = gk + 5 * b;
        for (int c = 0; c < 3; c++) {
            float* x = image + ((int64_t)b * 3 + c) * H * W;
            for (int i = 0; i < H; i++)  // along rows (replicate padding)
                for (int j = 0; j < W; j++) {
                    float acc = 0.0f;
                    for (int k = 0; k < 5; k++) {
                        int jj = j + k - 2;
                        jj = jj < 0 ? 0 : (jj >= W ? W - 1 : jj);
                        acc = acc + w[k] * x[i * W + jj];
                    }
                    tmp[i * W + j] = acc;
                }
            for (int i = 0; i < H; i++)  // along columns
                for (int j = 0; j < W; j++) {
                    float acc = 0.0f;
                    for (int k = 0; k < 5; k++) {
                        int ii = i + k - 2;
                        ii = ii < 0 ? 0 : (ii >= H ? H - 1 : ii);
                        acc = acc + w[k] * tmp[ii * W + j];
                    }
                    x[i * W + j] = acc;
                }
        }
    }
}

// render._add_noise, in place: noise (B,) std, white_tex (n, n), tex_off (B, 2)
void hp_noise(int B, int H, int W, float* image, const float* white_tex, int tex_n, const int64_t* tex_off,
              const float* noise) {
    for (int b = 0; b < B; b++) {
        float amp = noise[b] * f(std::sqrt(12.0));
        int64_t oy = tex_off[2 * b + 1] * 3, ox = tex_off[2 * b] * 7;
        for (int c = 0; c < 3; c++) {
            float* x = image + ((int64_t)b * 3 + c) * H * W;
            for (int i = 0; i < H; i++) {
                const float* trow = white_tex + ((i + oy) % tex_n) * tex_n;
                for (int j = 0; j < W; j++) {
                    float v = x[i * W + j] + amp * trow[(j + ox) % tex_n];
                    x[i * W + j] = t_clamp(v, 0.0f, 1.0f);
                }
            }
        }
    }
}

}  // extern "C"
