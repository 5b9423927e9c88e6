"""Coarser meshes for the camera, the same physics: vertex-clustering simplification of a compiled model's
render meshes, in place.

A software rasteriser (MuJoCo on CPU through EGL/OSMesa llvmpipe) spends most of a small frame on
triangles: MetaWorld's Sawyer arm alone is ~65k of them, and at 64-256 px most are smaller than a pixel.
Hiding the arm's large meshes made a 64 px MetaWorld frame ~3x faster. This module keeps every mesh but
draws it with fewer triangles:

* vertices are grouped by a grid of ``cell`` metres in the mesh's own frame; every face is re-pointed to
  one existing vertex per cell (the vertex nearest the cell's mean), faces that collapse (two corners in
  one cell) or repeat are dropped. No vertex moves, so the silhouette changes by less than a cell.
* only ``mesh_face`` / ``mesh_facenormal`` / ``mesh_facetexcoord`` (the first ``k`` rows of each mesh's
  block) and ``mesh_facenum`` change. MuJoCo reads faces when a rendering context uploads the meshes
  (``mjr_makeContext``) and for ray casts; collision uses the convex hulls and the bounding-volume tree
  built at compile time, and inertia was computed at compile time too, so a simulation steps exactly as
  before (``tests/test_metaworld.py`` checks the state bit for bit).

Call it before the first ``mujoco.Renderer`` is made on the model; a context made earlier keeps the full
meshes. Ray casts (``mj_ray``) against simplified meshes see the coarse faces.

    stats = simplify_render_meshes(model, cell=0.01, min_faces=2000)
    stats.faces_before, stats.faces_after   # e.g. 67479 -> 9600
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass(frozen=True)
class LodStats:
    meshes: int  # meshes simplified
    faces_before: int  # all meshes' faces before
    faces_after: int  # and after


def cluster_faces(verts: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Faces of a vertex-clustered mesh over the same vertices, and the index of the original face each kept
    face came from.  verts: float [V, 3]; faces: int [F, 3] -> (int [K, 3], int [K]) with K <= F."""
    if cell <= 0:
        raise ValueError(f"cell must be > 0 metres, got {cell}")
    keys = np.floor(verts / cell).astype(np.int64)  # [V, 3] grid cell of each vertex
    _, cluster = np.unique(keys, axis=0, return_inverse=True)  # [V] cell id
    cluster = cluster.reshape(-1)
    n = int(cluster.max()) + 1
    mean = np.zeros((n, 3))
    np.add.at(mean, cluster, verts)
    mean /= np.bincount(cluster, minlength=n)[:, None]
    dist = np.linalg.norm(verts - mean[cluster], axis=1)  # [V] distance to the cell's mean
    order = np.lexsort((dist, cluster))  # by cell, nearest first
    first = np.ones(len(order), bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    rep = np.empty(n, np.int64)
    rep[cluster[order][first]] = order[first]  # cell -> its representative vertex
    new = rep[cluster[faces]]  # [F, 3]
    alive = (new[:, 0] != new[:, 1]) & (new[:, 1] != new[:, 2]) & (new[:, 0] != new[:, 2])
    idx = np.flatnonzero(alive)
    _, uniq = np.unique(np.sort(new[idx], axis=1), axis=0, return_index=True)  # one face per vertex triple
    idx = idx[np.sort(uniq)]
    return new[idx], idx


def simplify_render_meshes(model: mujoco.MjModel, cell: float = 0.01, min_faces: int = 2000) -> LodStats:
    """Simplify, in place, every mesh with more than ``min_faces`` faces to a ``cell``-metre vertex grid.
    Returns how many faces the renderer will draw before and after (each mesh counted once)."""
    if min_faces < 0:
        raise ValueError(f"min_faces must be >= 0, got {min_faces}")
    before = after = done = 0
    for i in range(model.nmesh):
        fa, nf = int(model.mesh_faceadr[i]), int(model.mesh_facenum[i])
        va, nv = int(model.mesh_vertadr[i]), int(model.mesh_vertnum[i])
        before += nf
        if nf <= min_faces or nv == 0:
            after += nf
            continue
        faces = model.mesh_face[fa:fa + nf].astype(np.int64)  # [F, 3] indices into this mesh's vertices
        new, src = cluster_faces(model.mesh_vert[va:va + nv].astype(np.float64), faces, cell)
        k = len(new)
        if k == 0 or k >= nf:
            after += nf
            continue
        # per corner: a vertex keeps the normal / texture coordinate it had at some corner of an original face
        for field in ("mesh_facenormal", "mesh_facetexcoord"):
            arr = getattr(model, field)
            if arr.shape[0] < fa + nf or (field == "mesh_facetexcoord" and model.mesh_texcoordnum[i] == 0):
                continue
            block = arr[fa:fa + nf].astype(np.int64)  # [F, 3]
            per_vert = np.zeros(nv, np.int64)
            per_vert[faces.reshape(-1)] = block.reshape(-1)
            arr[fa:fa + k] = per_vert[new]
        model.mesh_face[fa:fa + k] = new
        model.mesh_facenum[i] = k
        after += k
        done += 1
    return LodStats(meshes=done, faces_before=before, faces_after=after)
