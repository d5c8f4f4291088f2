"""Independent PyTorch reference of SegMamba, written from /work/shared/spec/segmamba.md.

The module tree mirrors the official checkpoint layout, so ``state_dict()``
keys and shapes are exactly those of the released model (names are listed in
the spec, section 2). Everything runs in float32 on the CPU, batch 1.

The selective scan exists twice:
  * ``scan_loop``: the recurrence of the spec, one position at a time. Slow,
    used only to validate on small sequences.
  * ``scan_chunked``: the same recurrence evaluated chunk by chunk. Inside a
    chunk of T positions the state contribution of position s to position t is
    exp(A * sum_{s<k<=t} delta_k); those segment sums are formed directly (not
    as differences of running sums, which would cancel catastrophically after
    a large delta) and the s > t entries are set to -inf before exp, so nothing
    overflows. Only the state at chunk boundaries is carried sequentially.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_NSLICES = (64, 32, 16, 8)
NORM_EPS = 1e-5
LRELU_SLOPE = 0.01

# Chunk length of scan_chunked and the largest (chunks, d, N, T, T) block it
# materialises at once, in elements (2^21 floats = 8 MiB: measured fastest).
SCAN_CHUNK = 8
SCAN_BLOCK_ELEMS = 1 << 21


# --------------------------------------------------------------------------
# Selective scan. Shapes: u, delta (d, L); A (d, N); B, C (N, L) -> (d, L).
# Both return sum_n C[n,l] h_l[d,n] only; D*u and the z gate are added by
# the caller, identically for both.
# --------------------------------------------------------------------------

def scan_loop(u, delta, A, B, C):
    """h = exp(delta*A) * h + delta*B*u; y = C.h, position by position."""
    d, L = u.shape
    h = u.new_zeros(d, A.shape[1])
    y = u.new_empty(d, L)
    for i in range(L):
        h = torch.exp(delta[:, i, None] * A) * h + (delta[:, i] * u[:, i])[:, None] * B[None, :, i]
        y[:, i] = h @ C[:, i]
    return y


def scan_chunked(u, delta, A, B, C, chunk=SCAN_CHUNK, block_elems=SCAN_BLOCK_ELEMS):
    """scan_loop's result, vectorised within chunks of `chunk` positions."""
    d, L = u.shape
    N = A.shape[1]
    T = chunk
    nc = -(-L // T)
    pad = nc * T - L
    if pad:  # the scan is causal: trailing padding cannot reach real outputs
        u, delta, B, C = (F.pad(t, (0, pad)) for t in (u, delta, B, C))

    # Chunk-major views: (nc, d, T) and (nc, N, T).
    dl = delta.view(d, nc, T).transpose(0, 1)
    du = (delta * u).view(d, nc, T).transpose(0, 1)
    Bc = B.view(N, nc, T).transpose(0, 1)
    Cc = C.view(N, nc, T).transpose(0, 1)

    idx = torch.arange(T)
    # [k, s]: 1 where k > s. [t, s]: -inf where s > t (added, not multiplied,
    # so the finite log-decays never meet an inf * 0).
    strictly_below = (idx[:, None] > idx[None, :]).to(u.dtype)
    future = torch.zeros(T, T, dtype=u.dtype).masked_fill_(idx[:, None] < idx[None, :], float("-inf"))
    An = A[None, :, :, None, None]  # (1, d, N, 1, 1)

    y = u.new_empty(nc, d, T)
    h = u.new_zeros(d, N)
    group = max(1, block_elems // (d * N * T * T))
    for c0 in range(0, nc, group):
        c1 = min(nc, c0 + group)
        g_dl, g_du, g_B, g_C = dl[c0:c1], du[c0:c1], Bc[c0:c1], Cc[c0:c1]
        G = c1 - c0

        # seg[g,d,t,s] = sum of delta_k over s < k <= t (0 where s >= t).
        seg = (g_dl.unsqueeze(-1) * strictly_below).cumsum(dim=-2)
        logw = torch.addcmul(future, seg.unsqueeze(2), An)
        w = torch.exp_(logw)  # (G, d, N, T, T): decay from position s to t

        # State each chunk would end with if it started from zero.
        local_end = torch.einsum("gdns,gns,gds->gdn", w[..., T - 1, :], g_B, g_du)
        # Outputs from inputs inside the same chunk.
        w.mul_(g_C[:, None, :, :, None] * g_B[:, None, :, None, :])
        y_in = (w.sum(dim=2) @ g_du.unsqueeze(-1)).squeeze(-1)

        # Decay from the chunk start through position t (inclusive).
        start_decay = torch.exp(A[None, :, :, None] * g_dl.cumsum(dim=-1)[:, :, None, :])
        h_start = u.new_empty(G, d, N)
        for g in range(G):
            h_start[g] = h
            h = torch.addcmul(local_end[g], start_decay[g, :, :, T - 1], h)
        y_carry = torch.einsum("gdnt,gdn,gnt->gdt", start_decay, h_start, g_C)
        y[c0:c1] = y_in + y_carry
    return y.transpose(0, 1).reshape(d, nc * T)[:, :L]


SCANS = {"loop": scan_loop, "chunked": scan_chunked}


def sequence_order(direction, L, nslices):
    """Token visited at each sequence position, for direction "", "_b" or "_s"."""
    if direction == "":
        return torch.arange(L)
    if direction == "_b":
        return torch.arange(L - 1, -1, -1)
    if direction == "_s":
        if L % nslices:
            raise ValueError(f"slice scan: {L} tokens are not divisible by nslices={nslices}")
        m = L // nslices
        # Position q = j*S + s visits token s*m + j.
        return torch.arange(L).view(nslices, m).t().reshape(-1)
    raise ValueError(f"unknown direction {direction!r}")


# --------------------------------------------------------------------------
# Building blocks (module names chosen to reproduce the checkpoint keys).
# --------------------------------------------------------------------------

def instance_norm(x):
    """Per-channel normalisation over D*H*W, biased variance, no affine.

    Written out because F.instance_norm refuses a single voxel, which stage 3
    of a 16^3 input has (the result there is simply 0).
    """
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + NORM_EPS)


class InstanceNorm(nn.Module):
    def forward(self, x):
        return instance_norm(x)


class ConvUnit(nn.Module):
    """A bare convolution under the attribute name `conv` (MONAI's wrapper)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x)


class ResBlock(nn.Module):
    """MONAI UnetResBlock: bias-free 3x3x3 convs, parameter-free InstanceNorm."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvUnit(nn.Conv3d(cin, cout, 3, padding=1, bias=False))
        self.conv2 = ConvUnit(nn.Conv3d(cout, cout, 3, padding=1, bias=False))
        if cin != cout:
            self.conv3 = ConvUnit(nn.Conv3d(cin, cout, 1, bias=False))
        else:
            self.conv3 = None

    def forward(self, x):
        a = F.leaky_relu(instance_norm(self.conv1(x)), LRELU_SLOPE)
        a = instance_norm(self.conv2(a))
        r = x if self.conv3 is None else instance_norm(self.conv3(x))
        return F.leaky_relu(a + r, LRELU_SLOPE)


class BasicBlock(nn.Module):
    """MONAI UnetrBasicBlock with res_block=True: a ResBlock under `layer`."""

    def __init__(self, cin, cout):
        super().__init__()
        self.layer = ResBlock(cin, cout)

    def forward(self, x):
        return self.layer(x)


class UpBlock(nn.Module):
    """MONAI UnetrUpBlock: k2 s2 transposed conv, concat (up first), ResBlock."""

    def __init__(self, cin, cout):
        super().__init__()
        self.transp_conv = ConvUnit(nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=False))
        self.conv_block = ResBlock(2 * cout, cout)

    def forward(self, x, skip):
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class OutBlock(nn.Module):
    """MONAI UnetOutBlock: 1x1x1 conv with bias. The released code hard-codes
    48 input channels; feat_size[0] is what it means (48 when released)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = ConvUnit(nn.Conv3d(cin, cout, 1, bias=True))

    def forward(self, x):
        return self.conv(x)


class GSC(nn.Module):
    """Gated spatial convolution; the two branches are added (released code)."""

    def __init__(self, c):
        super().__init__()
        self.proj = nn.Conv3d(c, c, 3, padding=1)
        self.proj2 = nn.Conv3d(c, c, 3, padding=1)
        self.proj3 = nn.Conv3d(c, c, 1)
        self.proj4 = nn.Conv3d(c, c, 1)

    def forward(self, x):
        x1 = F.relu(instance_norm(self.proj2(F.relu(instance_norm(self.proj(x))))))
        x2 = F.relu(instance_norm(self.proj3(x)))
        return F.relu(instance_norm(self.proj4(x1 + x2))) + x


class MlpChannel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv3d(c, 2 * c, 1)
        self.fc2 = nn.Conv3d(2 * c, c, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


DIRECTIONS = ("", "_b", "_s")  # forward, backward, slice

# The bimamba types of the official vendored mamba_ssm (spec section 7.1):
# the directions each scans, its output being out_proj of their sum.
MAMBA_TYPES = {"v3": ("", "_b", "_s"), "v2": ("", "_b"), "none": ("",)}


class Mamba(nn.Module):
    """Mamba on a (L, C) sequence, with the scan orientations of its bimamba
    type: "v3" (default) forward, backward and inter-slice; "v2" forward and
    backward; "none" forward only (stock Mamba).

    Per direction s the parameters are conv1d{s}, x_proj{s}, dt_proj{s},
    A{s}_log and D{s}, which yields the official names (A_b_log, D_s, ...).
    nslices is used by the slice direction only.
    """

    def __init__(self, d_model, nslices, d_state=16, d_conv=4, expand=2, scan="chunked",
                 mamba_type="v3"):
        super().__init__()
        if mamba_type not in MAMBA_TYPES:
            raise ValueError(f"unknown Mamba type {mamba_type!r} (v3, v2 or none)")
        self.directions = MAMBA_TYPES[mamba_type]
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.nslices = nslices
        self.scan = SCANS[scan]
        di, R, N = self.d_inner, self.dt_rank, d_state
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        for s in self.directions:
            setattr(self, f"conv1d{s}", nn.Conv1d(di, di, d_conv, groups=di, bias=True))
            setattr(self, f"x_proj{s}", nn.Linear(di, R + 2 * N, bias=False))
            setattr(self, f"dt_proj{s}", nn.Linear(R, di, bias=True))
            setattr(self, f"A{s}_log", nn.Parameter(torch.zeros(di, N)))
            setattr(self, f"D{s}", nn.Parameter(torch.zeros(di)))
        self.out_proj = nn.Linear(di, d_model, bias=False)

    def direction(self, x, z, s):
        """Gated scan output y (d_inner, L) of direction s, in token order."""
        L = x.shape[1]
        order = sequence_order(s, L, self.nslices)
        xs, zs = x[:, order], z[:, order]
        conv = getattr(self, f"conv1d{s}")
        u = F.silu(F.conv1d(F.pad(xs, (self.d_conv - 1, 0)), conv.weight, conv.bias,
                            groups=self.d_inner))
        p = getattr(self, f"x_proj{s}").weight @ u
        R, N = self.dt_rank, self.d_state
        dt_low, B, C = p[:R], p[R:R + N], p[R + N:]
        dt_proj = getattr(self, f"dt_proj{s}")
        delta = F.softplus(dt_proj.weight @ dt_low + dt_proj.bias[:, None])
        A = -torch.exp(getattr(self, f"A{s}_log"))
        ys = self.scan(u, delta, A, B, C) + getattr(self, f"D{s}")[:, None] * u
        ys = ys * F.silu(zs)
        y = torch.empty_like(ys)
        y[:, order] = ys
        return y

    def forward(self, t):
        """t: (L, C) -> (L, C)."""
        xz = self.in_proj.weight @ t.t()
        x, z = xz[:self.d_inner], xz[self.d_inner:]
        y = sum(self.direction(x, z, s) for s in self.directions)
        return (self.out_proj.weight @ y).t()


class MambaLayer(nn.Module):
    def __init__(self, dim, nslices, d_state, d_conv, expand, scan, mamba_type):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mamba = Mamba(dim, nslices, d_state, d_conv, expand, scan, mamba_type)

    def forward(self, x):
        c = x.shape[1]
        t = x.reshape(c, -1).t()
        return self.mamba(self.norm(t)).t().reshape(x.shape) + x


class EncoderBase(nn.Module):
    """The encoder loop of both families: per stage, the blocks before the
    Mamba layers (stage_blocks: downsampling and GSC blocks, with the names
    their intermediates are recorded under), the Mamba layers, and the skip
    MLP on the instance-normed output."""

    def forward(self, x, inter):
        skips = []
        for i in range(4):
            for name, block in self.stage_blocks(i):
                x = block(x)
                _record(inter, name, x)
            for j, layer in enumerate(self.stages[i]):
                x = layer(x)
                _record(inter, f"mamba{i}_{j}", x)
            _record(inter, f"stage{i}", x)
            o = self.mlps[i](instance_norm(x))
            _record(inter, f"skip{i}", o)
            skips.append(o)
        return skips


class MambaEncoder(EncoderBase):
    def __init__(self, in_chans, depths, dims, nslices, d_state, d_conv, expand, scan,
                 mamba_type):
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv3d(in_chans, dims[0], 7, 2, 3))])
        for i in range(1, 4):
            self.downsample_layers.append(nn.Sequential(
                InstanceNorm(),  # index 0: parameter-free, hence absent from the state_dict
                nn.Conv3d(dims[i - 1], dims[i], 2, 2)))
        # Registered in the official order so state_dict() lists keys the same way.
        self.stages = nn.ModuleList([
            nn.Sequential(*[MambaLayer(dims[i], nslices[i], d_state, d_conv, expand, scan,
                                       mamba_type)
                            for _ in range(depths[i])])
            for i in range(4)])
        self.gscs = nn.ModuleList([GSC(c) for c in dims])
        self.mlps = nn.ModuleList([MlpChannel(c) for c in dims])

    def stage_blocks(self, i):
        return [("stem" if i == 0 else f"down{i}", self.downsample_layers[i]),
                (f"gsc{i}", self.gscs[i])]


# --------------------------------------------------------------------------
# SegMamba-V2 (spec section 7.2): LargeKernelConv blocks and V2 Mamba layers.
# --------------------------------------------------------------------------

class ConvBlock(nn.Module):
    """CB(k, p, dil): ReLU(IN(conv)), the conv under `block.0` (bias)."""

    def __init__(self, c, k, p, dil):
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(c, c, k, padding=p, dilation=dil, bias=True))

    def forward(self, x):
        return F.relu(instance_norm(self.block(x)))


class SqueezeExcite(nn.Module):
    """g = sigmoid(fc2(ReLU(fc1(mean over voxels)))) per channel; x * g."""

    def __init__(self, c, reduction=8):
        super().__init__()
        if c // reduction < 1:
            raise ValueError(f"SegMamba-V2: {c} channels leave no squeeze width (c/{reduction})")
        self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.ReLU(),
                                nn.Linear(c // reduction, c), nn.Sigmoid())

    def forward(self, x):
        g = self.fc(x.mean(dim=(2, 3, 4)))
        return x * g[:, :, None, None, None]


class LargeKernelConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.deep_path = nn.Sequential(ConvBlock(c, 5, 2, 1), ConvBlock(c, 3, 1, 1),
                                       ConvBlock(c, 3, 2, 2))
        self.shortcut_path = nn.Sequential(ConvBlock(c, 3, 1, 1), ConvBlock(c, 1, 0, 1))
        self.se = SqueezeExcite(c)

    def forward(self, x):
        return self.se(self.deep_path(x) + self.shortcut_path(x) + x)


# The three token orderings of a V2 Mamba layer, as permutations of the
# spatial axes of (C, D, H, W) (axis 1 = D, 2 = H, 3 = W): (D,H,W), (H,D,W), (W,H,D).
V2_ORDERINGS = ((1, 2, 3), (2, 1, 3), (3, 2, 1))


class MambaLayerV2(nn.Module):
    """One LayerNorm and one stock (forward-only) Mamba over three orderings."""

    def __init__(self, dim, d_state, d_conv, expand, scan):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mamba = Mamba(dim, 1, d_state, d_conv, expand, scan, "none")

    def forward(self, x):
        v = x[0]  # (C, D, H, W)
        c = v.shape[0]
        out = x.clone()
        for perm in V2_ORDERINGS:
            p = v.permute(0, *perm)  # (C, a, b, c)
            t = p.reshape(c, -1).t()
            m = self.mamba(self.norm(t)).t().reshape(p.shape)
            inv = [0] * 4
            for k, axis in enumerate((0, *perm)):
                inv[axis] = k
            out[0] += m.permute(*inv)
        return out


class MambaEncoderV2(EncoderBase):
    def __init__(self, depths, dims, d_state, d_conv, expand, scan):
        super().__init__()
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(nn.Conv3d(dims[max(i - 1, 0)], dims[i], 3, 2, 1)) for i in range(4)])
        self.gscs = nn.ModuleList([
            nn.Sequential(*[LargeKernelConv(dims[i]) for _ in range(depths[i])])
            for i in range(4)])
        self.stages = nn.ModuleList([
            nn.Sequential(*[MambaLayerV2(dims[i], d_state, d_conv, expand, scan)
                            for _ in range(depths[i] if i >= 2 else 0)])
            for i in range(4)])
        self.mlps = nn.ModuleList([MlpChannel(c) for c in dims])

    def stage_blocks(self, i):
        return [(f"down{i}", self.downsample_layers[i])] + [
            (f"gsc{i}_{j}", block) for j, block in enumerate(self.gscs[i])]


def _record(inter, name, t):
    if inter is not None:
        inter[name] = t


def fue(z):
    """Feature-level uncertainty estimation (paper): z + z * (1 - entropy term)."""
    m = torch.sigmoid(z.mean(dim=1, keepdim=True))
    u = -m * torch.log(m)
    return z + z * (1 - u)


FAMILIES = ("v1", "v2")


class SegMambaRef(nn.Module):
    """family "v1": SegMamba (spec section 2, Mamba type per 7.1); "v2":
    SegMamba-V2 (spec 7.2: the encoder runs on encoder1's output, no Mamba
    type, nslices unused)."""

    def __init__(self, in_chans, out_chans, depths, feat_size, hidden_size, nslices,
                 fue=False, d_state=16, d_conv=4, expand=2, scan="chunked", mamba_type="v3",
                 family="v1"):
        super().__init__()
        if len(depths) != 4 or len(feat_size) != 4 or len(nslices) != 4:
            raise ValueError("depths, feat_size and nslices need 4 entries each")
        if mamba_type not in MAMBA_TYPES:
            raise ValueError(f"unknown Mamba type {mamba_type!r} (v3, v2 or none)")
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r} (v1 or v2)")
        self.nslices = tuple(nslices)
        self.mamba_type = mamba_type if family == "v1" else "none"
        self.family = family
        self.fue = fue
        f = feat_size
        if family == "v1":
            self.vit = MambaEncoder(in_chans, depths, f, nslices, d_state, d_conv, expand, scan,
                                    mamba_type)
        else:
            self.vit = MambaEncoderV2(depths, f, d_state, d_conv, expand, scan)
        self.encoder1 = BasicBlock(in_chans, f[0])
        self.encoder2 = BasicBlock(f[0], f[1])
        self.encoder3 = BasicBlock(f[1], f[2])
        self.encoder4 = BasicBlock(f[2], f[3])
        self.encoder5 = BasicBlock(f[3], hidden_size)
        self.decoder5 = UpBlock(hidden_size, f[3])
        self.decoder4 = UpBlock(f[3], f[2])
        self.decoder3 = UpBlock(f[2], f[1])
        self.decoder2 = UpBlock(f[1], f[0])
        self.decoder1 = BasicBlock(f[0], f[0])
        self.out = OutBlock(f[0], out_chans)

    def check_shape(self, shape):
        """Raise ValueError unless (D, H, W) is accepted: sides multiples of 16, and with
        the slice direction (type "v3") L % S == 0."""
        if len(shape) != 3 or any(n <= 0 or n % 16 for n in shape):
            raise ValueError(f"each side must be a positive multiple of 16, got {tuple(shape)}")
        if "_s" not in MAMBA_TYPES[self.mamba_type]:
            return
        for i, s in enumerate(self.nslices):
            L = math.prod(n >> (i + 1) for n in shape)
            if s <= 0 or L % s:
                raise ValueError(f"stage {i}: {L} tokens are not divisible by nslices={s}")

    @torch.no_grad()
    def forward(self, x, intermediates=None):
        """x: (1, in_chans, D, H, W) -> logits (1, out_chans, D, H, W).

        If `intermediates` is a dict, per-stage tensors (NCDHW) are stored in it.
        """
        if x.dim() != 5 or x.shape[0] != 1:
            raise ValueError(f"expected input (1, C, D, H, W), got {tuple(x.shape)}")
        self.check_shape(x.shape[2:])
        inter = intermediates
        if self.family == "v1":
            skips = self.vit(x, inter)
        else:
            enc1 = self.encoder1(x)
            skips = self.vit(enc1, inter)
        if self.fue:
            skips = [fue(o) for o in skips]
            for i, o in enumerate(skips):
                _record(inter, f"fue{i}", o)
        enc = [self.encoder1(x) if self.family == "v1" else enc1, self.encoder2(skips[0]), self.encoder3(skips[1]),
               self.encoder4(skips[2])]
        for i, e in enumerate(enc):
            _record(inter, f"enc{i + 1}", e)
        d = self.encoder5(skips[3])
        _record(inter, "hidden", d)
        for k, up in ((5, self.decoder5), (4, self.decoder4), (3, self.decoder3), (2, self.decoder2)):
            d = up(d, enc[k - 2])
            _record(inter, f"dec{k}", d)
        d = self.decoder1(d)
        _record(inter, "dec1", d)
        logits = self.out(d)
        _record(inter, "logits", logits)
        return logits
