// Engine v2's triangle rasterizer and shader in plain C++ for CPU tensors (``raster_native.py``).
//
// This file repeats the torch reference of ``raster.py`` operation by operation, in float32 and in
// the same order, compiled with ``-ffp-contract=off`` and without ``-ffast-math`` (square roots in
// double, rounded), so it gives the same bits. One image at a time, its buffers in the cache:
// triangle set-up, coverage and two z-buffers (hand, objects), then shading of each covered pixel.
// Images are independent: a batch is shared among threads.
//
// Layout (C-contiguous; float32 unless noted): P (B, Nv, 3) (the first Nvh the hand's); N_obj
// (B, Nv - Nvh, 3) the objects' normals; inc (Nvh, D) int32 (mesh.incidence: the hand's Nth
// triangles around each vertex, Nth = none); faces (Nt, 3) int32; mat (Nt,)
// int32 (0 skin, 1 + k object slot k); CA (Nt, 3, 8) corner attributes; K4 (B, 4) fx fy cx cy;
// app (B, 48) (columns: raster.APP); objapp (B, 6, 8); tex (2, n, n); bgp (B, 12) background
// parameters bg_u (5), prob, gain (3), plain (3); pool (Np, 3, H + 16, W + 16) uint8.
// Outputs: image (B, 3, H, W) over the background; mask (B, H, W) uint8 (the hand in front);
// depth (B, H, W) (hand z there, else 0); zh, zo (B, H, W) (inf: none); tri_h (B, H, W) int32
// the nearest hand triangle (-1: none); frac (B,).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

namespace {

const float INF = std::numeric_limits<float>::infinity();
const float NEAR = 1.0f;
const int PAD = 16, BG_W = 12;
const int APP_W = 48, CA_W = 8, OBJ_W = 8, NUM_OBJ = 6, NUM_LIGHTS = 3;
const float PORE_SCALE = 1024.0f, BLOTCH_SCALE = 160.0f;
const float AO_STEP = (float)0.06;
const int AO_R = 3;  // raster.AO_RADIUS
const int AO_OFF[8][2] = {{-3, 0}, {3, 0}, {0, -3}, {0, 3}, {-2, -2}, {-2, 2}, {2, -2}, {2, 2}};
enum {
    A_SKIN = 0, A_PALM_MIX = 3, A_PALM_TONE = 4, A_RED = 7, A_PORES = 8, A_BLOTCH = 9, A_CREASE = 10,
    A_NAIL = 11, A_SLEEVE_START = 14, A_SLEEVE = 15, A_SLEEVE_PERIOD = 18, A_SLEEVE_STRIPE = 19,
    A_AMBIENT = 20, A_WRAP = 23, A_SSS = 24, A_SPEC = 25, A_RIM = 26, A_LIGHTS = 27, A_TEX_OFF = 45,
};

// raster._sqrt: float64 square root rounded to float32, which equals the correctly rounded float32
// square root (53 >= 2 * 24 + 2 bits), i.e. the hardware's
inline float t_sqrt(float x) { return std::sqrt(x); }
inline float t_clamp_min(float x, float lo) { return x < lo ? lo : x; }
inline float t_clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
inline float dot3(const float* a, const float* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
inline void unit3(const float* v, float* out) {
    float inv = 1.0f / t_sqrt(dot3(v, v));
    out[0] = v[0] * inv; out[1] = v[1] * inv; out[2] = v[2] * inv;
}
// raster._tex; n is a power of two, so Python's floor modulo is a mask
inline float tex_at(const float* tex, int n, int c, float s, float t) {
    int64_t i = (int64_t)std::floor(t) & (n - 1), j = (int64_t)std::floor(s) & (n - 1);
    return tex[((int64_t)c * n + i) * n + j];
}

// the covered pixels are shaded in chunks of CHUNK points, one array per quantity, so that the
// per-point arithmetic runs as loops over points that the compiler vectorises (see shade_chunk)
const int CHUNK = 256;
struct Surf {
    // filled per point by render_one: interpolated position, normal (not unit) and attributes,
    // material (1: skin), an object's albedo, ambient occlusion, the pixel
    float px[CHUNK], py[CHUNK], pz[CHUNK], nx[CHUNK], ny[CHUNK], nz[CHUNK];
    float palm[CHUNK], red[CHUNK], nail[CHUNK], fa[CHUNK], crease[CHUNK], tu[CHUNK], tv[CHUNK];
    float oa0[CHUNK], oa1[CHUNK], oa2[CHUNK], ao[CHUNK];
    int32_t hand[CHUNK], q[CHUNK];
    // shade_chunk's: texel indices, texels, colours
    int32_t ip[CHUNK], ib[CHUNK];
    float pores[CHUNK], blotch[CHUNK], out0[CHUNK], out1[CHUNK], out2[CHUNK];
};

struct Tri {
    float u[3], v[3], iz[3], inv_area, sgn;
    int x0, x1, y0, y1;
    bool valid;
};

// raster.weights_at for one pixel centre (``cover``: stop early outside the triangle)
inline bool weights_at(const Tri& t, float x, float y, float& z, float w[3], bool cover) {
    float e0 = ((t.u[2] - t.u[1]) * (y - t.v[1]) - (t.v[2] - t.v[1]) * (x - t.u[1])) * t.sgn;
    float e1 = ((t.u[0] - t.u[2]) * (y - t.v[2]) - (t.v[0] - t.v[2]) * (x - t.u[2])) * t.sgn;
    float e2 = ((t.u[1] - t.u[0]) * (y - t.v[0]) - (t.v[1] - t.v[0]) * (x - t.u[0])) * t.sgn;
    bool inside = (e0 >= 0) && (e1 >= 0) && (e2 >= 0);
    if (cover && !inside) return false;
    float q0 = (e0 * t.inv_area) * t.iz[0];
    float q1 = (e1 * t.inv_area) * t.iz[1];
    float q2 = (e2 * t.inv_area) * t.iz[2];
    z = 1.0f / ((q0 + q1) + q2);
    w[0] = q0 * z; w[1] = q1 * z; w[2] = q2 * z;
    return inside;
}

// the object albedo of raster.shade_points (colour, checker or stripes) of a point p (3,) of
// material mat >= 1
inline void object_albedo(const float* p, int mat, const float* objapp, float* alb) {
    int k = mat - 1;
    k = k < 0 ? 0 : (k > NUM_OBJ - 1 ? NUM_OBJ - 1 : k);
    const float* oa = objapp + k * OBJ_W;
    float sc = oa[4];
    float cs = (std::floor(p[0] / sc) + std::floor(p[1] / sc)) + std::floor(p[2] / sc);
    float checker = (cs - 2.0f * std::floor(cs * 0.5f)) * 0.35f;
    float sb = std::floor(dot3(p, oa + 5) / sc);
    float stripes = (sb - 2.0f * std::floor(sb * 0.5f)) * 0.35f;
    float fac = 1.0f - (oa[3] == 1 ? checker : (oa[3] == 2 ? stripes : 0.0f));
    for (int c = 0; c < 3; ++c) alb[c] = oa[c] * fac;
}

struct Light {
    float x, y, z, r, g, b;
};

// one light's terms (raster.shade_points' loop body), added in the reference's order
inline void add_light(const Light& L, float nx, float ny, float nz, float rx, float ry, float rz, float wrap,
                      float inv_wrap, float spec_k, float& l0, float& l1, float& l2, float& c0, float& c1, float& c2,
                      float& p0, float& p1, float& p2) {
    float ndl = (nx * L.x + ny * L.y) + nz * L.z;
    float diff = t_clamp_min((ndl + wrap) * inv_wrap, 0.0f);
    float sc_ = diff - t_clamp_min(ndl, 0.0f);
    float s1 = t_clamp_min((rx * L.x + ry * L.y) + rz * L.z, 0.0f);
    float s2 = s1 * s1, s4 = s2 * s2, s8 = s4 * s4, s16 = s8 * s8;
    float sk = s16 * spec_k;
    l0 = l0 + L.r * diff; l1 = l1 + L.g * diff; l2 = l2 + L.b * diff;
    c0 = c0 + L.r * sc_; c1 = c1 + L.g * sc_; c2 = c2 + L.b * sc_;
    p0 = p0 + L.r * sk; p1 = p1 + L.g * sk; p2 = p2 + L.b * sk;
}

// raster.shade_points for the n <= CHUNK points of S (colours to S.out0-2): three loops over the
// points, the first and the last vectorised (every branch computed, then selected, like the
// reference), the texture reads between them
void shade_chunk(Surf& S, int n, const float* app, const float* tex, int tn) {
    const float off0 = app[A_TEX_OFF], off1 = app[A_TEX_OFF + 1];
    const int32_t m = tn - 1, plane = tn * tn;
    // raster._tex's texel indices; the coordinates are small (UVs in [0, 1] times the scales plus
    // offsets < 256), so int32 holds their floor; the mask keeps any index in the texture
    {
        const float* __restrict tu = S.tu;
        const float* __restrict tv = S.tv;
        int32_t* __restrict ip = S.ip;
        int32_t* __restrict ib = S.ib;
        for (int i = 0; i < n; ++i) {
            float s0 = tu[i] * PORE_SCALE + off0, t0 = tv[i] * PORE_SCALE + off1;
            float s1 = tu[i] * BLOTCH_SCALE + off1, t1 = tv[i] * BLOTCH_SCALE + off0;
            ip[i] = ((int32_t)std::floor(t0) & m) * tn + ((int32_t)std::floor(s0) & m);
            ib[i] = plane + ((int32_t)std::floor(t1) & m) * tn + ((int32_t)std::floor(s1) & m);
        }
    }
    for (int i = 0; i < n; ++i) {
        S.pores[i] = tex[S.ip[i]];
        S.blotch[i] = tex[S.ib[i]];
    }
    const float tint[3] = {1.0f, (float)0.45, (float)0.3};
    const float red_tint[3] = {(float)0.10, (float)-0.16, (float)-0.14};
    Light Lp[NUM_LIGHTS];
    for (int k = 0; k < NUM_LIGHTS; ++k) {
        const float* L = app + A_LIGHTS + 6 * k;
        Lp[k] = {L[0], L[1], L[2], L[3], L[4], L[5]};
    }
    const float amb0 = app[A_AMBIENT], amb1 = app[A_AMBIENT + 1], amb2 = app[A_AMBIENT + 2];
    const float rim_a = app[A_RIM], a_wrap = app[A_WRAP], a_sss = app[A_SSS], a_spec = app[A_SPEC];
    const float start = app[A_SLEEVE_START], period = app[A_SLEEVE_PERIOD], a_stripe = app[A_SLEEVE_STRIPE];
    const float a_pores = app[A_PORES], a_blotch = app[A_BLOTCH], a_palm = app[A_PALM_MIX], a_red = app[A_RED];
    const float a_crease = app[A_CREASE];
    const float sk0 = app[A_SKIN], sk1 = app[A_SKIN + 1], sk2 = app[A_SKIN + 2];
    const float pt0 = app[A_PALM_TONE], pt1 = app[A_PALM_TONE + 1], pt2 = app[A_PALM_TONE + 2];
    const float nl0 = app[A_NAIL], nl1 = app[A_NAIL + 1], nl2 = app[A_NAIL + 2];
    const float sl0 = app[A_SLEEVE], sl1 = app[A_SLEEVE + 1], sl2 = app[A_SLEEVE + 2];
    const float* __restrict px = S.px;
    const float* __restrict py = S.py;
    const float* __restrict pz = S.pz;
    const float* __restrict nxp = S.nx;
    const float* __restrict nyp = S.ny;
    const float* __restrict nzp = S.nz;
    const float* __restrict palm = S.palm;
    const float* __restrict red = S.red;
    const float* __restrict nail = S.nail;
    const float* __restrict fa = S.fa;
    const float* __restrict crease = S.crease;
    const float* __restrict oa0 = S.oa0;
    const float* __restrict oa1 = S.oa1;
    const float* __restrict oa2 = S.oa2;
    const float* __restrict aop = S.ao;
    const float* __restrict pores_p = S.pores;
    const float* __restrict blotch_p = S.blotch;
    const int32_t* __restrict handp = S.hand;
    float* __restrict o0 = S.out0;
    float* __restrict o1 = S.out1;
    float* __restrict o2 = S.out2;
    for (int i = 0; i < n; ++i) {
        // unit normal, view direction, reflected view ray
        float ax = nxp[i], ay = nyp[i], az = nzp[i];
        float inv_n = 1.0f / t_sqrt((ax * ax + ay * ay) + az * az);
        float nx = ax * inv_n, ny = ay * inv_n, nz = az * inv_n;
        float bx = px[i], by = py[i], bz = pz[i];
        float inv_d = 1.0f / t_sqrt((bx * bx + by * by) + bz * bz);
        float dx = bx * inv_d, dy = by * inv_d, dz = bz * inv_d;
        float ndv = (nx * dx + ny * dy) + nz * dz;
        float rx = dx - nx * (2.0f * ndv), ry = dy - ny * (2.0f * ndv), rz = dz - nz * (2.0f * ndv);
        // albedo: sleeve, skin (tone, palm, red, grain, creases, nails) or the object's
        bool hand = handp[i] != 0;
        bool sleeve = hand & (fa[i] > start);  // &, not &&: a branch would stop the vectoriser
        bool skin_px = hand & !sleeve;
        float pores = pores_p[i];
        float band = fa[i] / period;
        float stripe = band - 2.0f * std::floor(band * 0.5f);
        stripe = stripe >= 1.0f ? a_stripe : 0.0f;
        float cloth_f = (1.0f - stripe) + (0.5f * a_pores) * pores;
        float pm = palm[i] * a_palm;
        float r = red[i] * a_red;
        float grain = 1.0f + (a_pores * pores + a_blotch * blotch_p[i]);
        float cr = 1.0f - crease[i] * a_crease;
        float ns = t_clamp((nail[i] - 0.5f) * 3.0f + 0.5f, 0.0f, 1.0f);
        float s0 = sk0 + (pt0 - sk0) * pm, s1 = sk1 + (pt1 - sk1) * pm, s2 = sk2 + (pt2 - sk2) * pm;
        s0 = ((s0 * (1.0f + r * red_tint[0])) * grain) * cr;
        s1 = ((s1 * (1.0f + r * red_tint[1])) * grain) * cr;
        s2 = ((s2 * (1.0f + r * red_tint[2])) * grain) * cr;
        s0 = s0 + (nl0 - s0) * ns;
        s1 = s1 + (nl1 - s1) * ns;
        s2 = s2 + (nl2 - s2) * ns;
        float a0 = hand ? (sleeve ? sl0 * cloth_f : s0) : oa0[i];
        float a1 = hand ? (sleeve ? sl1 * cloth_f : s1) : oa1[i];
        float a2 = hand ? (sleeve ? sl2 * cloth_f : s2) : oa2[i];
        // the lights
        float wrap = skin_px ? a_wrap : 0.1f;
        float sss = skin_px ? a_sss : 0.0f;
        float spec_k = a_spec * (skin_px ? 1.0f + 2.0f * ns : (hand ? 0.3f : 1.5f));
        float rimw = skin_px ? 1.0f : 0.3f;
        float inv_wrap = 1.0f / (1.0f + wrap);
        float l0 = amb0, l1 = amb1, l2 = amb2, c0 = 0, c1 = 0, c2 = 0, p0 = 0, p1 = 0, p2 = 0;
        add_light(Lp[0], nx, ny, nz, rx, ry, rz, wrap, inv_wrap, spec_k, l0, l1, l2, c0, c1, c2, p0, p1, p2);
        add_light(Lp[1], nx, ny, nz, rx, ry, rz, wrap, inv_wrap, spec_k, l0, l1, l2, c0, c1, c2, p0, p1, p2);
        add_light(Lp[2], nx, ny, nz, rx, ry, rz, wrap, inv_wrap, spec_k, l0, l1, l2, c0, c1, c2, p0, p1, p2);
        float f = 1.0f - t_clamp(-ndv, 0.0f, 1.0f);
        float f2 = f * f;
        float rim = (((f2 * f2) * f) * rim_a) * rimw;
        float o = aop[i];
        o0[i] = t_clamp((a0 * (l0 * o + c0 * (sss * tint[0])) + p0 * o) + (l0 * rim) * 0.5f, 0.0f, 1.0f);
        o1[i] = t_clamp((a1 * (l1 * o + c1 * (sss * tint[1])) + p1 * o) + (l1 * rim) * 0.5f, 0.0f, 1.0f);
        o2[i] = t_clamp((a2 * (l2 * o + c2 * (sss * tint[2])) + p2 * o) + (l2 * rim) * 0.5f, 0.0f, 1.0f);
    }
}


void render_one(int b, int H, int W, int Nv, int Nt, int Nvh, int Nth, const int32_t* inc, int D,
                const float* P, const float* N_obj, const int32_t* faces,
                const int32_t* mat, const float* CA, const float* K4, const float* app, const float* objapp,
                const float* tex, int tn, const float* bgp, const uint8_t* pool, int n_pool, float* image,
                uint8_t* mask, float* depth, float* zh, float* zo, int32_t* tri_h, float* frac, std::vector<Tri>& tris, std::vector<float>& uvz, std::vector<int32_t>& th, std::vector<int32_t>& to,
                std::vector<float>& nrm_buf, std::vector<float>& fn_buf, Surf& surf, std::vector<float>& zf,
                std::vector<float>& ao_buf) {
    const float* Pb = P + (int64_t)b * Nv * 3;
    // normals: the hand's from its triangles (raster.vertex_normals), the objects' given
    nrm_buf.resize((size_t)Nv * 3);
    fn_buf.resize((size_t)(Nth + 1) * 3);
    for (int t = 0; t < Nth; ++t) {
        const float* a = Pb + faces[t * 3] * 3;
        const float* b_ = Pb + faces[t * 3 + 1] * 3;
        const float* c = Pb + faces[t * 3 + 2] * 3;
        float e1[3] = {b_[0] - a[0], b_[1] - a[1], b_[2] - a[2]};
        float e2[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
        fn_buf[t * 3 + 0] = e1[1] * e2[2] - e1[2] * e2[1];
        fn_buf[t * 3 + 1] = e1[2] * e2[0] - e1[0] * e2[2];
        fn_buf[t * 3 + 2] = e1[0] * e2[1] - e1[1] * e2[0];
    }
    fn_buf[Nth * 3 + 0] = fn_buf[Nth * 3 + 1] = fn_buf[Nth * 3 + 2] = 0.0f;
    for (int v = 0; v < Nvh; ++v) {
        const int32_t* iv = inc + (int64_t)v * D;
        float s[3];
        for (int c = 0; c < 3; ++c) s[c] = fn_buf[iv[0] * 3 + c];
        for (int k = 1; k < D; ++k)
            for (int c = 0; c < 3; ++c) s[c] = s[c] + fn_buf[iv[k] * 3 + c];
        unit3(s, &nrm_buf[v * 3]);
    }
    const float* No = N_obj + (int64_t)b * (Nv - Nvh) * 3;
    for (int i = 0; i < (Nv - Nvh) * 3; ++i) nrm_buf[Nvh * 3 + i] = No[i];
    const float* Nb = nrm_buf.data();
    const float* ap = app + (int64_t)b * APP_W;
    const float* oa = objapp + (int64_t)b * NUM_OBJ * OBJ_W;
    float fx = K4[b * 4 + 0], fy = K4[b * 4 + 1], cx = K4[b * 4 + 2], cy = K4[b * 4 + 3];
    const int HW = H * W;
    float* zhb = zh + (int64_t)b * HW;
    float* zob = zo + (int64_t)b * HW;
    // vertices: u, v, iz, z
    uvz.resize((size_t)Nv * 4);
    for (int i = 0; i < Nv; ++i) {
        float z = Pb[i * 3 + 2];
        float iz = 1.0f / z;
        uvz[i * 4 + 0] = fx * (Pb[i * 3 + 0] * iz) + cx;
        uvz[i * 4 + 1] = fy * (Pb[i * 3 + 1] * iz) + cy;
        uvz[i * 4 + 2] = iz;
        uvz[i * 4 + 3] = z;
    }
    tris.resize(Nt);
    for (int t = 0; t < Nt; ++t) {
        Tri& T = tris[t];
        float zmin = INF;
        for (int k = 0; k < 3; ++k) {
            int vi = faces[t * 3 + k];
            T.u[k] = uvz[vi * 4 + 0];
            T.v[k] = uvz[vi * 4 + 1];
            T.iz[k] = uvz[vi * 4 + 2];
            float z = uvz[vi * 4 + 3];
            zmin = (z < zmin || z != z) ? z : zmin;
        }
        float area = (T.u[1] - T.u[0]) * (T.v[2] - T.v[0]) - (T.v[1] - T.v[0]) * (T.u[2] - T.u[0]);
        T.sgn = area > 0 ? 1.0f : -1.0f;
        T.inv_area = 1.0f / (area * T.sgn);
        float umin = std::fmin(std::fmin(T.u[0], T.u[1]), T.u[2]), umax = std::fmax(std::fmax(T.u[0], T.u[1]), T.u[2]);
        float vmin = std::fmin(std::fmin(T.v[0], T.v[1]), T.v[2]), vmax = std::fmax(std::fmax(T.v[0], T.v[1]), T.v[2]);
        bool finite = std::isfinite(area) && std::isfinite(umin) && std::isfinite(umax) && std::isfinite(vmin) &&
                      std::isfinite(vmax);
        T.valid = (zmin > NEAR) && (area != 0) && finite;
        if (!T.valid) continue;
        // raster.back_faces
        if (mat[t] == 0) {
            if (T.sgn > 0) { T.valid = false; continue; }
        } else {
            bool away = true;
            for (int k = 0; k < 3; ++k) {
                int vi = faces[t * 3 + k];
                away = away && (dot3(Nb + vi * 3, Pb + vi * 3) > 0);
            }
            if (away) { T.valid = false; continue; }
        }
        T.x0 = (int)t_clamp(std::ceil(umin - 0.5f), 0.0f, (float)W);
        T.x1 = (int)t_clamp(std::floor(umax - 0.5f), -1.0f, (float)(W - 1));
        T.y0 = (int)t_clamp(std::ceil(vmin - 0.5f), 0.0f, (float)H);
        T.y1 = (int)t_clamp(std::floor(vmax - 0.5f), -1.0f, (float)(H - 1));
        T.valid = (T.x0 <= T.x1) && (T.y0 <= T.y1);
    }
    // coverage and the two z-buffers (triangles in index order: ties keep the lower index)
    th.assign(HW, -1);
    to.assign(HW, -1);
    for (int q = 0; q < HW; ++q) { zhb[q] = INF; zob[q] = INF; }
    for (int t = 0; t < Nt; ++t) {
        const Tri& T = tris[t];
        if (!T.valid) continue;
        bool is_hand = mat[t] == 0;
        float* zb = is_hand ? zhb : zob;
        int32_t* tb = is_hand ? th.data() : to.data();
        // raster.weights_at for every pixel of the box, without branches (so it vectorises);
        // outside the triangle z is computed but not used
        const float u0 = T.u[0], u1 = T.u[1], u2 = T.u[2], v0 = T.v[0], v1 = T.v[1], v2 = T.v[2];
        const float sg = T.sgn, inv = T.inv_area, iz0 = T.iz[0], iz1 = T.iz[1], iz2 = T.iz[2];
        const int x0 = T.x0, x1 = T.x1, y0 = T.y0, y1 = T.y1;  // locals: the stores below may alias T
        for (int py = y0; py <= y1; ++py) {
            const float y = (float)py + 0.5f;
            float* zrow = zb + py * W;
            int32_t* trow = tb + py * W;
            for (int px = x0; px <= x1; ++px) {
                const float x = (float)px + 0.5f;
                float e0 = ((u2 - u1) * (y - v1) - (v2 - v1) * (x - u1)) * sg;
                float e1 = ((u0 - u2) * (y - v2) - (v0 - v2) * (x - u2)) * sg;
                float e2 = ((u1 - u0) * (y - v0) - (v1 - v0) * (x - u0)) * sg;
                float q0 = (e0 * inv) * iz0;
                float q1 = (e1 * inv) * iz1;
                float q2 = (e2 * inv) * iz2;
                float z = 1.0f / ((q0 + q1) + q2);
                float old = zrow[px];
                bool upd = (e0 >= 0) & (e1 >= 0) & (e2 >= 0) & (z < old);
                zrow[px] = upd ? z : old;
                trow[px] = upd ? t : trow[px];
            }
        }
    }
    // background (render._background), then the shaded pixels over it
    const float* bp = bgp + (int64_t)b * BG_W;
    const int PH = H + PAD, PW = W + PAD;
    int64_t idx = (int64_t)(bp[0] * (float)n_pool);
    if (idx > n_pool - 1) idx = n_pool - 1;
    int boy = (int)(int64_t)(bp[1] * (float)PAD);
    int box_ = (int)(int64_t)(bp[2] * (float)PAD);
    bool flip = bp[3] < 0.5f;
    bool photo = bp[4] < bp[5];
    const uint8_t* pimg = pool + idx * 3 * PH * PW;
    const float inv255 = (float)(1.0 / 255.0);
    float* col = image + (int64_t)b * 3 * HW;
    for (int c = 0; c < 3; c++) {
        const float gain = bp[6 + c], plain = bp[9 + c];
        for (int row = 0; row < H; row++) {
            float* out = col + c * HW + row * W;
            const uint8_t* src = pimg + (c * PH + boy + row) * PW + box_;
            if (!photo) {
                for (int x = 0; x < W; x++) out[x] = plain;
            } else if (flip) {
                for (int x = 0; x < W; x++) out[x] = t_clamp((float)src[W - 1 - x] * inv255 * gain, 0.0f, 1.0f);
            } else {
                for (int x = 0; x < W; x++) out[x] = t_clamp((float)src[x] * inv255 * gain, 0.0f, 1.0f);
            }
        }
    }
    // raster.ambient_occlusion of every pixel, a loop over each row that vectorises: the front
    // depth zf with a border of AO_R pixels of inf (the reference's padding)
    const int ZW = W + 2 * AO_R;
    zf.assign((size_t)(H + 2 * AO_R) * ZW, INF);
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            int q = y * W + x;
            zf[(size_t)(y + AO_R) * ZW + AO_R + x] = zhb[q] < zob[q] ? zhb[q] : zob[q];
        }
    ao_buf.resize(HW);
    for (int y = 0; y < H; ++y) {
        const float* zc = zf.data() + (size_t)(y + AO_R) * ZW + AO_R;
        float* __restrict ar = ao_buf.data() + y * W;
        for (int x = 0; x < W; ++x) {
            float zq = zc[x], count = 0.0f;
            for (int k = 0; k < 8; ++k) {
                float nb = zc[x + AO_OFF[k][0] * ZW + AO_OFF[k][1]];
                count = count + (((nb < zq - 4.0f) & (nb > zq - 60.0f)) ? 1.0f : 0.0f);
            }
            ar[x] = 1.0f - AO_STEP * count;
        }
    }
    // the front surface of each pixel: mask, depth, and the covered pixels' points, shaded a
    // chunk at a time (shade_chunk) over the background
    uint8_t* mk = mask + (int64_t)b * HW;
    float* dp = depth + (int64_t)b * HW;
    int n_hand = 0, n_occ = 0, n = 0;
    auto flush = [&]() {
        shade_chunk(surf, n, ap, tex, tn);
        for (int i = 0; i < n; ++i) {
            int q = surf.q[i];
            col[q] = surf.out0[i]; col[HW + q] = surf.out1[i]; col[2 * HW + q] = surf.out2[i];
        }
        n = 0;
    };
    for (int q = 0; q < HW; ++q) {
        int t;
        bool front = th[q] >= 0 && (to[q] < 0 || zhb[q] < zob[q] || (zhb[q] == zob[q] && th[q] < to[q]));
        t = front ? th[q] : to[q];
        n_hand += th[q] >= 0;
        n_occ += (th[q] >= 0) && !front;
        mk[q] = front;
        dp[q] = front ? zhb[q] : 0.0f;
        if (t < 0) continue;
        const Tri& T = tris[t];
        float z, w[3];
        weights_at(T, (float)(q % W) + 0.5f, (float)(q / W) + 0.5f, z, w, false);
        const int32_t* f = faces + t * 3;
        const float *P0 = Pb + f[0] * 3, *P1 = Pb + f[1] * 3, *P2 = Pb + f[2] * 3;
        const float *N0 = Nb + f[0] * 3, *N1 = Nb + f[1] * 3, *N2 = Nb + f[2] * 3;
        float p[3];
        for (int c = 0; c < 3; ++c) p[c] = (w[0] * P0[c] + w[1] * P1[c]) + w[2] * P2[c];
        surf.px[n] = p[0]; surf.py[n] = p[1]; surf.pz[n] = p[2];
        surf.nx[n] = (w[0] * N0[0] + w[1] * N1[0]) + w[2] * N2[0];
        surf.ny[n] = (w[0] * N0[1] + w[1] * N1[1]) + w[2] * N2[1];
        surf.nz[n] = (w[0] * N0[2] + w[1] * N1[2]) + w[2] * N2[2];
        const float* ca = CA + (int64_t)t * 3 * CA_W;  // attribute 7 is not used by the shading
        float attr[7];
        for (int c = 0; c < 7; ++c) attr[c] = (w[0] * ca[c] + w[1] * ca[CA_W + c]) + w[2] * ca[2 * CA_W + c];
        surf.palm[n] = attr[0]; surf.red[n] = attr[1]; surf.nail[n] = attr[2]; surf.fa[n] = attr[3];
        surf.crease[n] = attr[4]; surf.tu[n] = attr[5]; surf.tv[n] = attr[6];
        bool hand = mat[t] == 0;
        surf.hand[n] = hand;
        float alb[3] = {0.0f, 0.0f, 0.0f};
        if (!hand) object_albedo(p, mat[t], oa, alb);
        surf.oa0[n] = alb[0]; surf.oa1[n] = alb[1]; surf.oa2[n] = alb[2];
        surf.ao[n] = ao_buf[q];
        surf.q[n] = q;
        if (++n == CHUNK) flush();
    }
    if (n > 0) flush();
    frac[b] = (float)n_occ / (float)(n_hand < 1 ? 1 : n_hand);
    std::copy(th.begin(), th.end(), tri_h + (int64_t)b * HW);
}

}  // namespace

extern "C" void hp_mesh_render(int B, int H, int W, int Nv, int Nt, int Nvh, int Nth, const int32_t* inc, int D,
                               const float* P, const float* N_obj,
                               const int32_t* faces, const int32_t* mat, const float* CA, const float* K4,
                               const float* app, const float* objapp, const float* tex, int tn, const float* bgp,
                               const uint8_t* pool, int n_pool, float* image, uint8_t* mask, float* depth,
                               float* zh, float* zo, int32_t* tri_h, float* frac, int nthreads) {
    auto work = [&](int b0, int step) {
        std::vector<Tri> tris;
        std::vector<float> uvz;
        std::vector<int32_t> th, to;
        std::vector<float> nrm_buf, fn_buf, zf, ao_buf;
        std::unique_ptr<Surf> surf(new Surf);
        for (int b = b0; b < B; b += step)
            render_one(b, H, W, Nv, Nt, Nvh, Nth, inc, D, P, N_obj, faces, mat, CA, K4, app, objapp, tex, tn, bgp, pool, n_pool, image,
                       mask, depth, zh, zo, tri_h, frac, tris, uvz, th, to, nrm_buf, fn_buf, *surf, zf,
                       ao_buf);
    };
    int nt = nthreads < 1 ? 1 : (nthreads > B ? B : nthreads);
    if (nt <= 1) { work(0, 1); return; }
    std::vector<std::thread> pool_;
    for (int i = 0; i < nt; ++i) pool_.emplace_back(work, i, nt);
    for (auto& t : pool_) t.join();
}

// mesh.rest_skeleton's vertices (V0 + the targets, in order), mesh.skin (the blended map of each
// vertex, bones in order) and mesh_render._rigid (R x + T), for one image at a time
extern "C" void hp_mesh_pose(int B, int V, int K, int S2, const float* V0, const float* basis, const float* tw,
                             const int32_t* idx, const float* wts, const float* X, const float* R, const float* T,
                             float* out, int nthreads) {
    auto work = [&](int b0, int step) {
        std::vector<float> rest((size_t)V * 3);
        for (int b = b0; b < B; b += step) {
            const float* w = tw + (int64_t)b * S2;
            for (int i = 0; i < V * 3; ++i) {
                float d = w[0] * basis[i];
                for (int k = 1; k < S2; ++k) d = d + w[k] * basis[(int64_t)k * V * 3 + i];
                rest[i] = V0[i] + d;
            }
            const float* Xb = X + (int64_t)b * 22 * 12;
            const float* Rb = R + b * 9;
            const float* Tb = T + b * 3;
            float* ob = out + (int64_t)b * V * 3;
            for (int v = 0; v < V; ++v) {
                float A[12];
                const int32_t* iv = idx + (int64_t)v * K;
                const float* wv = wts + (int64_t)v * K;
                for (int c = 0; c < 12; ++c) A[c] = wv[0] * Xb[iv[0] * 12 + c];
                for (int k = 1; k < K; ++k)
                    for (int c = 0; c < 12; ++c) A[c] = A[c] + wv[k] * Xb[iv[k] * 12 + c];
                float x = rest[v * 3], y = rest[v * 3 + 1], z = rest[v * 3 + 2], h[3];
                for (int r = 0; r < 3; ++r) h[r] = ((A[4 * r] * x + A[4 * r + 1] * y) + A[4 * r + 2] * z) + A[4 * r + 3];
                for (int r = 0; r < 3; ++r)
                    ob[v * 3 + r] = ((Rb[r * 3] * h[0] + Rb[r * 3 + 1] * h[1]) + Rb[r * 3 + 2] * h[2]) + Tb[r];
            }
        }
    };
    int nt = nthreads < 1 ? 1 : (nthreads > B ? B : nthreads);
    if (nt <= 1) { work(0, 1); return; }
    std::vector<std::thread> pool_;
    for (int i = 0; i < nt; ++i) pool_.emplace_back(work, i, nt);
    for (auto& t : pool_) t.join();
}
