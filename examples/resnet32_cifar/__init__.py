"""The ResNet32 CIFAR-10 coverage study: a pytest suite that uses pytest-dlcoverage."""
