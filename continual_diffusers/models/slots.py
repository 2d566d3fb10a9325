"""Object-centric conditioning: an image encoder + Slot Attention turns an image into K slot vectors, which a
cross-attention UNet reads as its `encoder_hidden_states` (Latent Slot Diffusion, Jiang et al. 2023; SlotDiffusion,
Wu et al. 2023). The encoder trains end to end with the UNet through the ordinary denoising loss.

Slot Attention (Locatello et al. 2020, Algorithm 1), for inputs x ∈ R^{N×D_in} and slots s ∈ R^{K×D}:

    x ← LayerNorm(x);  k = W_k x,  v = W_v x                                         (N × D each)
    repeat T times:
        s_prev = s;  q = W_q LayerNorm(s)                                              (K × D)
        A = softmax_K(k qᵀ / √D) + ε          (N × K; normalised over the SLOTS: slots compete for inputs)
        W = A / Σ_N A                          (weighted mean over the inputs, per slot)
        u = Wᵀ v                                                                       (K × D)
        s = GRU(input=u, hidden=s_prev)
        s = s + MLP(LayerNorm(s))

The module has no slot-index-dependent parameters, so permuting the initial slots permutes the output slots
(equivariance), and the attention pools over the inputs, so permuting the N input tokens leaves the slots
unchanged (invariance); both are tested.

Initial slots (`slot_init`):
    - "sampled" (Locatello et al.): s⁰ = μ + σ ⊙ ξ with ξ ~ N(0, I) drawn afresh per image and training step, and
      μ, σ ∈ R^D learned and shared by the K slots. The slots are exchangeable, so they can only specialise by
      content. In eval mode ξ is one fixed draw (seeded by the config), so an image's slots are deterministic there:
      repeatable reconstructions and compositions, and a vmap'able per-sample Fisher for EWC (which runs in eval
      mode).
    - "learned": a learned K × D initial set (as BO-QSA, Jia et al. 2023, without its bi-level trick). Each slot
      gets an identity of its own, and on our shapes data that identity was a region of the canvas.

What makes the slots segment objects is the auxiliary decoder (`SpatialBroadcastDecoder`, `decoder_loss_weight`):
with the denoising loss alone, the UNet's cross-attention can read any object from any slot, and the masks split
the canvas into regions with all objects in one slot (FG-ARI 0.55 on the shapes benchmark, docs/slots.md); with the
decoder's per-slot mixture loss, 0.85.

Classifier-free guidance: the null condition is a learned null slot set (K × D), used for the rows whose condition
is dropped during training (`--uncond_p`) and for unconditional / guided sampling.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..utils.errors import UserInputError

SLOT_INITS = ("learned", "sampled")


class GRUCell(nn.Module):
    """Gated recurrent unit (Cho et al. 2014), the same maths and parameter shapes as `torch.nn.GRUCell`:

        r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h

    Written out because the fused `torch.nn.GRUCell` kernel has no batching rule for per-sample gradients under
    `torch.func.vmap` (EWC's Fisher), and to accept any leading batch dimensions.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.ih = nn.Linear(input_size, 3 * hidden_size)
        self.hh = nn.Linear(hidden_size, 3 * hidden_size)
        bound = hidden_size**-0.5  # torch.nn.GRUCell's initialisation: U(−1/√H, 1/√H) for every weight and bias
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (..., input_size), h (..., hidden_size) → h' (..., hidden_size)."""
        i_r, i_z, i_n = self.ih(x).chunk(3, dim=-1)
        h_r, h_z, h_n = self.hh(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h


class SlotAttention(nn.Module):
    """Slot Attention (Locatello et al. 2020, Algorithm 1; see the module docstring).

    Args:
        input_dim: D_in, the width of the input tokens.
        slot_dim: D, the width of the slots (and of q, k, v).
        num_iterations: T ≥ 1 attention / GRU rounds.
        mlp_hidden_dim: hidden width of the residual MLP (default 2·D).
        eps: ε added to the attention before the weighted mean (keeps an empty slot's mean defined).
    """

    def __init__(
        self, input_dim: int, slot_dim: int, num_iterations: int = 3, mlp_hidden_dim: int | None = None, eps=1e-8
    ):
        super().__init__()
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        self.num_iterations, self.slot_dim, self.eps = num_iterations, slot_dim, eps
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.to_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.gru = GRUCell(slot_dim, slot_dim)
        hidden = mlp_hidden_dim or 2 * slot_dim
        self.mlp = nn.Sequential(nn.Linear(slot_dim, hidden), nn.ReLU(), nn.Linear(hidden, slot_dim))

    def forward(self, inputs: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine `slots` on `inputs`.

        Args:
            inputs: (B, N, D_in) tokens.
            slots: (B, K, D) initial slots.

        Returns:
            slots (B, K, D) after T iterations, and the last iteration's attention (B, K, N), softmax-normalised
            over the K slots (each input's soft assignment; columns sum to 1).
        """
        d = slots.shape[-1]
        inputs = self.norm_inputs(inputs)
        keys, values = self.to_k(inputs), self.to_v(inputs)  # (B, N, D)
        scale = 1.0 / math.sqrt(d)
        for _ in range(self.num_iterations):
            previous = slots
            # 1. Attention logits between every input and every slot; softmax over the slots.
            queries = self.to_q(self.norm_slots(slots))  # (B, K, D)
            logits = torch.einsum("bnd,bkd->bnk", keys, queries) * scale
            attention = logits.softmax(dim=-1)  # (B, N, K)
            # 2. Weighted mean of the values per slot (ε keeps a slot that wins no input well defined).
            weights = attention + self.eps
            weights = weights / weights.sum(dim=1, keepdim=True)
            updates = torch.einsum("bnk,bnd->bkd", weights, values)  # (B, K, D)
            # 3. GRU update, then a residual MLP.
            slots = self.gru(updates, previous)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attention.transpose(1, 2)


class SoftPositionEmbed(nn.Module):
    """Adds a learned linear map of the 4-channel grid (x, y, 1 − x, 1 − y) ∈ [0, 1]⁴ to a feature map
    (Locatello et al. 2020, appendix: "soft position embedding")."""

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        axis = torch.linspace(0.0, 1.0, resolution)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("grid", torch.stack([xx, yy, 1 - xx, 1 - yy], dim=-1), persistent=False)  # (H, W, 4)
        self.proj = nn.Linear(4, channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, H, W, C) → same shape, plus the position embedding."""
        return features + self.proj(self.grid)


class SpatialBroadcastDecoder(nn.Module):
    """Slots → image, one slot at a time (Watters et al. 2019; Locatello et al. 2020, §3 "decoder"): each slot is
    broadcast over the H × W grid, given the soft position embedding and decoded by 3×3 convolutions into C channels
    plus a mask logit α_k; the masks are a softmax over the slots and the image is their mixture

        x̂ = Σ_k m_k ⊙ x̂_k,   m = softmax_k(α)                                          (B, C, H, W)

    A slot can only paint what it describes, and the mask softmax makes slots compete for pixels: the inductive bias
    that makes slot autoencoders segment objects. Used as an auxiliary loss on the slots (`SlotEncoder`).
    """

    def __init__(self, slot_dim: int, out_channels: int, resolution: int, hidden_channels: int = 32, num_layers=3):
        super().__init__()
        self.position = SoftPositionEmbed(slot_dim, resolution)
        layers: list[nn.Module] = []
        channels = slot_dim
        for _ in range(num_layers):
            layers += [nn.Conv2d(channels, hidden_channels, 3, padding=1), nn.ReLU()]
            channels = hidden_channels
        layers.append(nn.Conv2d(channels, out_channels + 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (B, K, D) → image (B, C, H, W) and masks (B, K, H, W) (sum to 1 over K)."""
        b, k, d = slots.shape
        res = self.position.grid.shape[0]
        grid = self.position(slots.reshape(b * k, 1, 1, d).expand(b * k, res, res, d))  # (B·K, H, W, D)
        out = self.net(grid.permute(0, 3, 1, 2)).unflatten(0, (b, k))  # (B, K, C + 1, H, W)
        masks = out[:, :, -1].softmax(dim=1)
        return (masks.unsqueeze(2) * out[:, :, :-1]).sum(dim=1), masks


class SlotEncoderOutput(NamedTuple):
    slots: torch.Tensor  # (B, K, D)
    attention: torch.Tensor  # (B, K, H, W): each pixel's soft assignment to the slots (sums to 1 over K)
    # (B,) λ·‖x − x̂(slots)‖² of a training forward with a decoder (grad enabled); None otherwise.
    decoder_loss: torch.Tensor | None = None


class SlotEncoder(ModelMixin, ConfigMixin):
    """Image (or VAE latent) → K slots: CNN → soft position embedding → LayerNorm + MLP → Slot Attention.

    The CNN keeps the resolution (stride-1 convolutions, as Locatello et al.'s CLEVR encoder), so the
    attention is one soft assignment per pixel and doubles as an unsupervised segmentation. A diffusers
    `ModelMixin`: `save_pretrained` / `from_pretrained` write and read `config.json` + safetensors.

    Args:
        in_channels: image channels (1 or 3), or the VAE's latent channels for latent models.
        resolution: input side H = W (the position grid is built for it).
        num_slots: K.
        slot_dim: D, also the UNet's `cross_attention_dim`.
        num_iterations: T Slot Attention rounds.
        hidden_channels: CNN width (the tokens' width D_in).
        num_conv_layers: conv + ReLU layers.
        kernel_size: their (odd) kernel size. Locatello et al. use 5×5 on 64-128 px images; on small canvases a
            3×3 kernel keeps each token local (2 layers see 5×5 pixels), so tokens group by colour and position
            rather than by context that spans several objects.
        null_slots: learn a null slot set for classifier-free guidance.
        slot_init: "sampled" or "learned" initial slots (module docstring).
        pixel_tokens: append the input pixel values to each token (after the CNN). On small canvases of flat-colour
            objects the colour is the cue that separates objects; the skip keeps it undiluted by the convolutions.
        decoder_loss_weight: λ > 0 adds a spatial-broadcast decoder (`SpatialBroadcastDecoder`) and, in training,
            the auxiliary loss λ·‖x − x̂(slots)‖² per image (mean over pixels) to the denoising loss (Locatello et
            al.'s autoencoder objective next to the diffusion one): the denoising loss alone lets one slot describe
            several objects, since the UNet's cross-attention can read anything from any slot.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        resolution: int = 16,
        num_slots: int = 4,
        slot_dim: int = 64,
        num_iterations: int = 3,
        hidden_channels: int = 32,
        num_conv_layers: int = 2,
        null_slots: bool = True,
        kernel_size: int = 3,
        # These three default to the behaviour before they existed, so a saved config without them loads as the
        # model it was; the CLI's defaults (sampled, 1.0) are the measured ones.
        slot_init: str = "learned",
        pixel_tokens: bool = False,
        decoder_loss_weight: float = 0.0,
    ):
        super().__init__()
        if min(in_channels, resolution, num_slots, slot_dim, num_iterations, hidden_channels, num_conv_layers) < 1:
            raise UserInputError("slot encoder sizes (channels, resolution, slots, slot_dim, iterations) must be >= 1")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise UserInputError(f"the slot encoder's kernel_size must be odd, got {kernel_size}")
        if decoder_loss_weight < 0:
            raise UserInputError(f"the slot decoder loss weight must be >= 0, got {decoder_loss_weight}")
        if slot_init not in SLOT_INITS:
            raise UserInputError(f"slot_init must be one of {SLOT_INITS}, got {slot_init!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_conv_layers):
            layers += [nn.Conv2d(channels, hidden_channels, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            channels = hidden_channels
        self.cnn = nn.Sequential(*layers)
        width = hidden_channels + (in_channels if pixel_tokens else 0)
        self.position = SoftPositionEmbed(width, resolution)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
        self.slot_attention = SlotAttention(width, slot_dim, num_iterations)
        if slot_init == "learned":
            self.slots_init = nn.Parameter(torch.randn(num_slots, slot_dim) * slot_dim**-0.5)
        else:
            self.slots_mu = nn.Parameter(torch.randn(slot_dim) * slot_dim**-0.5)
            self.slots_log_sigma = nn.Parameter(torch.full((slot_dim,), math.log(slot_dim**-0.5)))
            # The eval-mode draw: a function of the config alone, so it is not saved and every load gets it back.
            eval_noise = torch.randn(num_slots, slot_dim, generator=torch.Generator().manual_seed(0))
            self.register_buffer("eval_noise", eval_noise, persistent=False)
        self.null = nn.Parameter(torch.randn(num_slots, slot_dim) * slot_dim**-0.5) if null_slots else None
        self.decoder = SpatialBroadcastDecoder(slot_dim, in_channels, resolution) if decoder_loss_weight > 0 else None

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    def forward(self, images: torch.Tensor, noise: torch.Tensor | None = None) -> SlotEncoderOutput:
        """images (B, C, H, W) in the model's input space ([-1, 1] pixels or latents) → slots and attention masks.

        `noise` (B, K, D): the ξ of sampled initial slots in training (the trainer draws it from the step's seeded
        generator, so a resumed run repeats it); None draws from the global RNG. Ignored in eval mode."""
        c, res = self.config.in_channels, self.config.resolution
        if images.dim() != 4 or images.shape[1] != c or tuple(images.shape[2:]) != (res, res):
            raise UserInputError(
                f"the slot encoder takes (B, {c}, {res}, {res}) images, got {tuple(images.shape)}; encode images "
                "at the resolution and channel count the model was trained on"
            )
        features = self.cnn(images)
        if self.config.pixel_tokens:
            features = torch.cat([features, images], dim=1)
        features = features.permute(0, 2, 3, 1)  # (B, H, W, C)
        tokens = self.mlp(self.norm(self.position(features))).flatten(1, 2)  # (B, N, C)
        slots, attention = self.slot_attention(tokens, self.initial_slots(images.shape[0], noise))
        decoder_loss = None
        if self.decoder is not None and self.training and torch.is_grad_enabled():
            reconstruction, _ = self.decoder(slots)
            error = (reconstruction.float() - images.float()).pow(2).flatten(1).mean(1)
            decoder_loss = self.config.decoder_loss_weight * error
        return SlotEncoderOutput(slots, attention.unflatten(2, (res, res)), decoder_loss)

    def initial_slots(self, batch_size: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """s⁰, (batch_size, K, D): the learned set, or μ + σ ⊙ ξ (ξ = `noise` or fresh in training, fixed in eval)."""
        if self.config.slot_init == "learned":
            return self.slots_init.unsqueeze(0).expand(batch_size, -1, -1)
        if not self.training:
            noise = self.eval_noise.unsqueeze(0).expand(batch_size, -1, -1)
        elif noise is None:
            noise = torch.randn(batch_size, *self.eval_noise.shape, device=self.slots_mu.device)
        elif tuple(noise.shape) != (batch_size, *self.eval_noise.shape):
            raise ValueError(f"slot noise must be {(batch_size, *self.eval_noise.shape)}, got {tuple(noise.shape)}")
        noise = noise.to(self.slots_mu.dtype)
        return self.slots_mu + self.slots_log_sigma.exp() * noise

    def null_slots(self, batch_size: int) -> torch.Tensor:
        """The learned null slot set, (batch_size, K, D)."""
        if self.null is None:
            raise UserInputError(
                "this slot model was trained without classifier-free guidance, so it has no null slot set; "
                "retrain with --classifier_free_guidance, or condition on slots (no guidance)"
            )
        return self.null.unsqueeze(0).expand(batch_size, -1, -1)


def slot_unet_kwargs(encoder: SlotEncoder, cond: dict, batch_size: int) -> tuple[dict, torch.Tensor | None]:
    """Turn a slot condition into the UNet's `encoder_hidden_states` (B, K', D); also returns the encoder's
    decoder loss (B,) when it encoded images in a training forward (`SlotEncoderOutput.decoder_loss`), else None.

    `cond` holds one of:
        - `slot_images` (B, C, H, W): encode them now (training: the encoder gets gradients), optionally with
          `slot_keep` (B,) bool; rows where it is False get the null slot set (CFG dropout), and `slot_noise`
          (B, K, D), the ξ of sampled initial slots;
        - `encoder_hidden_states` (B, K', D): slots computed beforehand (sampling, composition), passed through;
        - nothing: the null slot set (the unconditional model).
    """
    cond, decoder_loss = dict(cond), None
    images, keep, noise = cond.pop("slot_images", None), cond.pop("slot_keep", None), cond.pop("slot_noise", None)
    if images is not None:
        if "encoder_hidden_states" in cond:
            raise ValueError("give either slot_images or encoder_hidden_states, not both")
        slots, _, decoder_loss = encoder(images, noise)
        if keep is not None:
            slots = torch.where(keep.view(-1, 1, 1), slots, encoder.null_slots(slots.shape[0]).to(slots.dtype))
        cond["encoder_hidden_states"] = slots
    elif keep is not None:
        raise ValueError("slot_keep needs slot_images")
    elif "encoder_hidden_states" not in cond:
        cond["encoder_hidden_states"] = encoder.null_slots(batch_size)
    return cond, decoder_loss
