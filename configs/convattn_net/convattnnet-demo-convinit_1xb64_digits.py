# As the demo, with every stage a local attention stage soft-initialised as
# a 3x3 convolution (QuadraticEncoding, 90% of the mass per head at init).
_base_ = ['./convattnnet-demo_1xb64_digits.py']
model = dict(backbone=dict(
    mixers=['conv-init', 'conv-init', 'conv-init', 'conv-init'],
    conv_init_mass=0.9))
