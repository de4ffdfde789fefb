module hookrelay.example/receiver

go 1.19
