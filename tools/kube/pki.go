package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// credentials are the files the apiserver reads at start, generated fresh for every cluster: nothing
// outlives the data folder, so no secret is ever reused between runs.
type credentials struct {
	caCertFile     string
	caCertPEM      []byte
	servingCert    string
	servingKey     string
	serviceAccount string // RSA private key: the apiserver signs with it and derives the public key from it
	tokenFile      string
	adminToken     string
}

const adminUser = "ddbbridge-admin"

// certificateLifetime only needs to cover one test run or demo; a day leaves room for a long session.
const certificateLifetime = 24 * time.Hour

func writePEM(path string, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	return os.WriteFile(path, data, 0o600)
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

// generateCredentials writes a CA, a serving certificate for the loopback address, the service-account
// signing key and a static token file granting one admin user system:masters.
func generateCredentials(dir string, serviceIP net.IP) (*credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caSerial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "ddbbridge-kube-ca"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certificateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingSerial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	// In-cluster names and the service IP are included so clients that follow the `kubernetes` service
	// (none today, the operator later perhaps) verify too.
	servingTemplate := &x509.Certificate{
		SerialNumber: servingSerial,
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(certificateLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, serviceIP},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}

	tokenBytes := make([]byte, 32)
	if _, err := rand.Read(tokenBytes); err != nil {
		return nil, err
	}

	creds := &credentials{
		caCertFile:     filepath.Join(dir, "ca.crt"),
		caCertPEM:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		servingCert:    filepath.Join(dir, "apiserver.crt"),
		servingKey:     filepath.Join(dir, "apiserver.key"),
		serviceAccount: filepath.Join(dir, "service-account.key"),
		tokenFile:      filepath.Join(dir, "tokens.csv"),
		adminToken:     hex.EncodeToString(tokenBytes),
	}
	if err := os.WriteFile(creds.caCertFile, creds.caCertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writePEM(creds.servingCert, "CERTIFICATE", servingDER); err != nil {
		return nil, err
	}
	if err := writeECKey(creds.servingKey, servingKey); err != nil {
		return nil, err
	}
	if err := writePEM(creds.serviceAccount, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return nil, err
	}
	// Static token file format: token,user,uid,"group1,group2".
	line := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", creds.adminToken, adminUser, adminUser)
	if err := os.WriteFile(creds.tokenFile, []byte(line), 0o600); err != nil {
		return nil, err
	}
	return creds, nil
}
