"""The extras pass of engine v2 (``extras.py`` says what the scene extras are and draws them):
their triangles, rasterized in a second pass and merged by depth into the hand pass of
``mesh_render.render_mesh``, the labels read off the merged depth, and the frames' tone."""

from __future__ import annotations

import torch

from . import accessories, context, hand, held, raster, raster_native
from .backgrounds import background_pool, dead_leaves_pool
from .extras import CLOTH_MM
from .shapes import Parts

SLEEVE_FREE_MM = 45.0  # a watch needs this much bare forearm above the wrist


def _take(d: dict, sel: torch.Tensor) -> dict:
    return {k: (v[sel] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in d.items()}


def extras_geometry(p: dict, e: dict, P_hand, joints, shape, app, native: bool):
    """The extras' triangles of a batch: ``(P (B, Nv, 3), N_obj, faces, mat, CA, inc)`` as
    ``raster.render_pixels`` takes them (skin parts first)."""
    B = P_hand.shape[0]
    skin = Parts(B, P_hand.device)
    context.add_skin(skin, p, e, shape, native)
    Vs, _, Fs, _ = skin.build()
    faces_s, ca_s, inc = (t.to(P_hand.device) for t in context.skin_layout(context.with_bust(e)))
    obj = Parts(B, P_hand.device)
    _, frames = hand.forward_kinematics(p["angles"], p["scale"], p["seg"])
    accessories.add_rings(obj, P_hand, joints, accessories.camera_frames(frames, p["R"]), e)
    on = e["watch_on"] | e["bracelet_on"]
    bare = raster.app_slice(app, "sleeve_start") > SLEEVE_FREE_MM
    accessories.add_watch(obj, P_hand, p["R"], p["wrist_rot"], dict(e, watch_on=e["watch_on"] & bare,
                          bracelet_on=e["bracelet_on"] & bare))  # fmt: skip
    del on
    held.add_held(obj, e["held_kind"], e, joints, p["R"], p["T"], p["scale"])
    context.add_face_objects(obj, e)
    Vo, No, Fo, Mo = obj.build()
    assert torch.equal(Fs, faces_s)
    P = torch.cat([Vs, Vo], 1)
    faces = torch.cat([Fs, Fo + Vs.shape[1]])
    mat = torch.cat([torch.zeros(len(Fs), dtype=torch.int64, device=P.device), Mo])
    CA = torch.cat([ca_s, torch.zeros(len(Fo), 3, 8, device=P.device)])
    return P, No, faces, mat, CA, inc


def needs_pass(e: dict) -> torch.Tensor:
    """(B,) bool: samples with anything for the extras pass to draw."""
    return (
        e["ring_on"].any(1)
        | e["watch_on"]
        | e["bracelet_on"]
        | (e["held_kind"] >= 0)
        | e["hand2_on"]
        | e["body_on"]
    )


def _dead_leaves(e: dict, H: int, W: int, device) -> torch.Tensor:
    """(B, 3, H, W) the dead-leaves backgrounds (entry, shift, flip and gain of e)."""
    pool = dead_leaves_pool(H, W).to(device)
    out = []
    for i in range(e["dl_entry"].shape[0]):
        sy, sx = int(e["dl_shift"][i, 0]), int(e["dl_shift"][i, 1])
        img = pool[int(e["dl_entry"][i]), :, sy : sy + H, sx : sx + W].float() / 255.0
        out.append(img.flip(-1) if bool(e["dl_flip"][i]) else img)
    return (torch.stack(out) * e["dl_gain"][:, :, None, None]).clamp(0, 1)


def composite(p, s, app, tex, K, H, W, native, image, mask, depth, zh, zo, frac):
    """Draw the extras of ``p["extras"]`` into the hand pass's outputs (``raster.render_pixels``'
    image, mask, depth, zh, zo, occlusion fraction; ``s`` is ``mesh_render.mesh_scene``'s dict,
    app the hand's appearance with its ambient light, tex the skin detail): returns the new
    ``(image, mask, depth, zo, frac)``, zo now the nearest non-hand surface of both passes."""
    e = p["extras"]
    mask, zo, frac = mask.clone(), zo.clone(), frac.clone()  # image: the hand pass's own, changed in place
    need = needs_pass(e)
    if bool(need.any()):
        sel = need.nonzero()[:, 0]
        ps, es = _take(p, sel), _take(e, sel)
        nv = s["inc"].shape[0]
        app_s = app[sel].clone()
        a, _ = raster.APP["sleeve_start"]
        app_s[:, a] = app_s[:, a].clamp_max(0.5 * CLOTH_MM)  # the torso is cloth
        geo = extras_geometry(
            ps, es, s["P"][sel, :nv], s["joints"][sel], s["params"]["shape"][sel], app_s, native
        )
        args = (*geo, K[sel], app_s, es["objapp"], tex)
        if native:
            bgp = torch.zeros(len(sel), 12)
            out = raster_native.render_pixels(*args, bgp, background_pool(H, W), H, W)
        else:
            out = raster.render_pixels(*args, torch.zeros(len(sel), 3, H, W, device=K.device), H, W)
        img_e, zh_e, zo_e = out[0], out[3], out[4]
        front_e = torch.minimum(zh_e, zo_e)
        use = front_e < torch.minimum(zh[sel], zo[sel])
        image[sel] = torch.where(use[:, None], img_e, image[sel])
        mask[sel] = mask[sel] & ~use
        zo[sel] = torch.minimum(zo[sel], front_e)
        hand_any = torch.isfinite(zh[sel])
        frac[sel] = (hand_any & ~mask[sel]).sum((1, 2)).float() / hand_any.sum((1, 2)).clamp_min(1).float()
    depth = torch.where(mask, depth, 0.0)
    dl = e["dead_leaves"]
    if bool(dl.any()):
        sel = dl.nonzero()[:, 0]
        empty = torch.isinf(zh[sel]) & torch.isinf(zo[sel])
        image[sel] = torch.where(empty[:, None], _dead_leaves(_take(e, sel), H, W, image.device), image[sel])
    return image, mask, depth, zo, frac


def tone(e: dict, image: torch.Tensor) -> torch.Tensor:
    """Grayscale and infrared-looking frames (after the camera's blur and noise): gray is the
    luma; infrared weighs red most (skin glows in near infrared), lifts it with a gamma < 1 and
    darkens it away from the illuminator's centre."""
    gray, ir = e["gray"], e["infrared"]
    any_ = gray | ir
    if not bool(any_.any()):
        return image
    sel = any_.nonzero()[:, 0]
    img = image[sel]
    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    _, _, H, W = img.shape
    nir = (0.75 * r + 0.2 * g + 0.05 * b).clamp(0, 1) ** e["ir_gamma"][sel, None, None]
    y = (torch.arange(H, device=image.device) + 0.5) / H
    x = (torch.arange(W, device=image.device) + 0.5) / W
    c = e["ir_centre"][sel]
    d2 = (y[None, :, None] - c[:, 0, None, None]) ** 2 + (x[None, None, :] - c[:, 1, None, None]) ** 2
    nir = nir * (1.0 - e["ir_falloff"][sel, None, None] * d2.clamp_max(1.0))
    out = torch.where(gray[sel, None, None], luma, nir)
    image = image.clone()
    image[sel] = out[:, None].expand_as(img)
    return image
