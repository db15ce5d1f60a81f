# As the demo, with global attention in every attention stage.
_base_ = ['./convattnnet-demo_1xb64_digits.py']
model = dict(backbone=dict(mixers=['conv', 'global', 'global', 'global']))
