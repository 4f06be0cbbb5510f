"""CIFAR training for sepconv_jax MobileNets: configs, data, the train step, drivers and the loop."""
