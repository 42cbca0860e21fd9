// A stdlib-only HTTP server for the `grace run` tests: serves on the socket
// it inherited at descriptor 3 (socket activation), "/" answers with its
// pid, "/slow?ms=N" after N milliseconds; on SIGTERM it stops accepting and
// finishes what is in flight (http.Server.Shutdown).
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") == "" {
		log.Fatal("no socket passed (LISTEN_PID/LISTEN_FDS)")
	}
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// Tells a test the request is in the server's hands.
			log.Printf("slow request started in %d", os.Getpid())
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		fmt.Fprintf(w, "hello from %d\n", os.Getpid())
	})
	srv := &http.Server{Handler: mux}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	// Serve returns as Shutdown starts; the requests in flight end later.
	<-done
}
