# Seed-style script: the seeds' own calls (seed 002's training cell, seed 003's
# LeNet, seed 002's GlobalAvgPool2d/FlattenLayer use), with only the import line
# changed from `import d2lzh_pytorch as d2l` to the one below.
import time
import torch
from torch import nn, optim
import torchvision
import sys
sys.path.append("..")
import d2lutils as d2l
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

class LeNet(nn.Module):
    def __init__(self):
        super(LeNet, self).__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5),
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2)
        )
        self.fc = nn.Sequential(
            d2l.FlattenLayer(),
            nn.Linear(16*5*5, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, 10)
        )
    def forward(self, img):
        feature = self.conv(img)
        return self.fc(feature)

net = LeNet()
print(net)
X = torch.rand(1, 1, 28, 28)
for name, blk in net.named_children():
    X = blk(X)
    print(name, 'output shape: ', X.shape)
print(d2l.GlobalAvgPool2d()(torch.rand(1, 10, 5, 5)).shape)

batch_size = 256
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, resize=None, root='~/Datasets/FashionMNIST')
for X, Y in train_iter:
    print('X =', X.shape,
        '\nY =', Y.type(torch.int32))
    break

lr, num_epochs = 0.001, 1
optimizer = torch.optim.Adam(net.parameters(), lr=lr)
d2l.train_ch5(net, train_iter, test_iter, batch_size, optimizer, device, num_epochs)
