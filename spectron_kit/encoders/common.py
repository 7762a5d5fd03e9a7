"""What both encoders share: input checks and the padding mask."""
import torch

def _check_inputs(x, lengths, ndim, what):
    """Validate a padded batch and its lengths; return lengths as a long tensor."""
    if not torch.is_tensor(x) or x.dim() != ndim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"encoder input must be {what}, got shape {shape}; "
                         f"add or remove the batch/feature axis")
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"lengths must have shape [{x.shape[0]}] (one per batch item), "
                         f"got {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        raise ValueError("lengths must be absolute integer lengths (torch.long), not "
                         "relative floats; multiply by the padded length and round")
    lengths = lengths.long()
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"lengths must lie in [1, {x.shape[1]}] (the padded length), got "
                         f"{lengths.tolist()}; pass absolute lengths of the unpadded inputs")
    return lengths


def _padding_mask(lengths, max_len):
    """Boolean [B, max_len] mask, True on padded positions."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)
