"""LeNet-5 and the input contract it was trained with."""
