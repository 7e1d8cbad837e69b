fn main() {
    println!("router: not built yet");
}
