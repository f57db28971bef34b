module example.com/acme/otaport-esp32

go 1.26.8

require github.com/otaport/otaport v0.4.0
