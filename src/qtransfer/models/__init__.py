"""Network A (pretrained image backbones, pretrained quantum networks) and network B (heads, one place that
builds a head from settings)."""
