"""Special methods, class methods, static methods and properties set on classes after
their class statements, as patching code and the tensor-subclass recipes do.

`Sub.__torch_function__ = classmethod(f)` must take effect on the real class, as it
would in the class body; so must methods and properties added to a model's class.
"""

import torch

torch.set_num_threads(1)
calls = []


def logging_function(cls, func, types, args=(), kwargs=None):
    calls.append(func.__name__)
    return super(cls, cls).__torch_function__(func, types, args, kwargs or {})


class InBody(torch.Tensor):
    __torch_function__ = classmethod(logging_function)


class Patched(torch.Tensor):
    pass


Patched.__torch_function__ = classmethod(logging_function)  # after the class statement

for cls in (InBody, Patched):
    calls.clear()
    y = torch.zeros(2).as_subclass(cls) + 1
    print(cls.__name__, "calls:", calls, "type:", type(y).__name__, y.sum().item())


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)


Net.scale = property(lambda self: 2.0)
Net.triple = staticmethod(lambda x: x * 3)
Net.describe = classmethod(lambda cls: f"{cls.__name__} with {len(list(cls().parameters()))}")
net = Net()
print("property:", net.scale)
print("staticmethod:", Net.triple(torch.ones(2)).tolist())
print("classmethod:", Net.describe())
