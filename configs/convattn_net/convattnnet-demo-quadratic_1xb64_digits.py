# As the demo, with Cordonnier et al.'s quadratic encoding in the attention
# stages instead of the learned bias table.
_base_ = ['./convattnnet-demo_1xb64_digits.py']
model = dict(backbone=dict(
    pos_encodings=dict(type='QuadraticEncoding', mode='isotropic')))
