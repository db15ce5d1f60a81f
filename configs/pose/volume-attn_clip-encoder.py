# A 3-D δ-attention encoder for video clips or volumes ([B, C, T, H, W]):
# every voxel attends to a 3x7x7 window (time x height x width) with a
# relative bias per 3-D offset. A backbone for clip-level pose or action
# heads; the model below is the encoder alone (build with MODELS.build).
model = dict(
    type='convattn_mm.VolumeAttnNet',
    in_channels=3,
    embed_dims=(48, 96, 192),
    depths=(1, 2, 2),
    num_heads=(3, 6, 12),
    patch_size=(1, 4, 4),
    kernel_size=(3, 7, 7),
    down_stride=(1, 2, 2),
    out_indices=(0, 1, 2),
    drop_path_rate=0.1)
